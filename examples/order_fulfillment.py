"""Handlers of the order fulfilment example: validate, reserve, charge, ship, notify.

`charge_payment` talks to a payment gateway that times out: it raises a RetryableError on
its first `payment_failures` attempts (a context knob, 0 by default), so the step is retried
with backoff and then succeeds; with 3 or more failures its retries run out and the order
fails.
"""

from __future__ import annotations

from typing import Any

from tasker.handlers import (
    PermanentError,
    RetryableError,
    StepContext,
    StepHandler,
    StepHandlerResult,
)


class ValidateOrder(StepHandler):
    handler_name = "examples.orders.validate_order"

    def call(self, context: StepContext) -> StepHandlerResult:
        items: list[dict[str, Any]] = context.get_input("items")
        if not items:
            raise PermanentError("an order needs at least one item")
        total = sum(item["quantity"] * item["price_cents"] for item in items)
        return self.success(
            {"order_id": context.get_input("order_id"), "total_cents": total, "lines": len(items)}
        )


class ReserveInventory(StepHandler):
    handler_name = "examples.orders.reserve_inventory"

    def call(self, context: StepContext) -> StepHandlerResult:
        order = context.get_dependency_result("validate_order")
        units = sum(item["quantity"] for item in context.get_input("items"))
        return self.success({"reservation_id": f"RSV-{order['order_id']}", "units": units})


class ChargePayment(StepHandler):
    handler_name = "examples.orders.charge_payment"

    def call(self, context: StepContext) -> StepHandlerResult:
        if context.retry_count < context.get_input_or("payment_failures", 0):
            raise RetryableError("payment gateway timed out", retry_after=0.2)
        order = context.get_dependency_result("validate_order")
        return self.success(
            {
                "charge_id": f"CH-{order['order_id']}",
                "amount_cents": order["total_cents"],
                "attempt": context.attempt,
            }
        )


class ShipOrder(StepHandler):
    handler_name = "examples.orders.ship_order"

    def call(self, context: StepContext) -> StepHandlerResult:
        reservation = context.get_dependency_result("reserve_inventory")
        charge = context.get_dependency_result("charge_payment")
        return self.success(
            {
                "tracking_number": f"TRK-{charge['charge_id'][3:]}",
                "units": reservation["units"],
            }
        )


class NotifyCustomer(StepHandler):
    handler_name = "examples.orders.notify_customer"

    def call(self, context: StepContext) -> StepHandlerResult:
        shipment = context.get_dependency_result("ship_order")
        return self.success(
            {
                "notified": context.get_input("customer_email"),
                "message": f"Your order shipped: {shipment['tracking_number']}",
            }
        )

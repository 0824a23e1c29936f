"""Handlers of the data pipeline example, in the function style: three extracts run in
parallel, each feeds its transform, one step aggregates them and a last one draws insights.

The extracted data is generated deterministically from the context's `days`, so the results
are exact.
"""

from __future__ import annotations

from typing import Any

from tasker.handlers import depends_on, inputs, step_handler

REGIONS = ("north", "south", "east", "west")
TIERS = ("bronze", "silver", "gold")


@step_handler("examples.pipeline.extract_sales")
@inputs("days")
def extract_sales(days: int) -> dict[str, Any]:
    records = [
        {"day": day, "region": REGIONS[(day + i) % 4], "amount": 100 + 10 * day + i}
        for day in range(1, days + 1)
        for i in range(3)
    ]
    return {"records": records, "source": "sales_db"}


@step_handler("examples.pipeline.extract_inventory")
@inputs("days")
def extract_inventory(days: int) -> dict[str, Any]:
    records = [{"sku": f"SKU-{i:03d}", "units": (i * 7) % 40} for i in range(1, 4 * days + 1)]
    return {"records": records, "source": "warehouse_api"}


@step_handler("examples.pipeline.extract_customers")
@inputs("days")
def extract_customers(days: int) -> dict[str, Any]:
    records = [{"id": i, "tier": TIERS[i % 3]} for i in range(1, 5 * days + 1)]
    return {"records": records, "source": "crm"}


@step_handler("examples.pipeline.transform_sales")
@depends_on(sales="extract_sales")
def transform_sales(sales: dict[str, Any]) -> dict[str, Any]:
    by_region = {region: 0 for region in REGIONS}
    for record in sales["records"]:
        by_region[record["region"]] += record["amount"]
    return {"revenue_by_region": by_region, "revenue": sum(by_region.values())}


@step_handler("examples.pipeline.transform_inventory")
@depends_on(inventory="extract_inventory")
def transform_inventory(inventory: dict[str, Any]) -> dict[str, Any]:
    units = [record["units"] for record in inventory["records"]]
    return {"total_units": sum(units), "low_stock_skus": sum(u < 5 for u in units)}


@step_handler("examples.pipeline.transform_customers")
@depends_on(customers="extract_customers")
def transform_customers(customers: dict[str, Any]) -> dict[str, Any]:
    tiers = {tier: 0 for tier in TIERS}
    for record in customers["records"]:
        tiers[record["tier"]] += 1
    return {"customers_by_tier": tiers, "customers": sum(tiers.values())}


@step_handler("examples.pipeline.aggregate_metrics")
@depends_on(
    sales="transform_sales", inventory="transform_inventory", customers="transform_customers"
)
def aggregate_metrics(
    sales: dict[str, Any], inventory: dict[str, Any], customers: dict[str, Any]
) -> dict[str, Any]:
    return {
        "revenue": sales["revenue"],
        "total_units": inventory["total_units"],
        "low_stock_skus": inventory["low_stock_skus"],
        "customers": customers["customers"],
        "top_region": max(sales["revenue_by_region"].items(), key=lambda kv: (kv[1], kv[0]))[0],
    }


@step_handler("examples.pipeline.generate_insights")
@depends_on(metrics="aggregate_metrics")
def generate_insights(metrics: dict[str, Any]) -> dict[str, Any]:
    per_customer = round(metrics["revenue"] / metrics["customers"], 2)
    insights = [
        f"top region: {metrics['top_region']}",
        f"revenue per customer: {per_customer}",
        f"{metrics['low_stock_skus']} SKUs are low on stock",
    ]
    return {"insights": insights, "revenue_per_customer": per_customer}

"""The REST API the orchestrator serves (Litestar on uvicorn) and its wire shapes.

`tasker.api.schemas` needs only msgspec, so clients import it without the server side.
"""

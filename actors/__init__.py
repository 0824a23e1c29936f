"""The orchestrator: pykka actors for initialization, discovery, enqueueing, result
processing and finalization, fed by inbox pumps and watched by a supervisor."""

"""The fleet: worker processes, the per-machine driver, machine state, agents, the services `cmq up` starts."""

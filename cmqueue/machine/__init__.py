"""Running on one machine: ssh, the session transport (client and server), the runner, job logs."""

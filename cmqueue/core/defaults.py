"""Default values, one documented constant each.

Every value here can be changed in the inventory (``settings:`` or ``defaults:``) or by an
environment variable named in ``cmqueue.config.settings``.
"""

from __future__ import annotations

#: Where the inventory is read from when neither --config nor CMQ_CONFIG is given.
CONFIG_PATH = "~/.cloudmesh/cmq.yaml"

#: Where cmq keeps its state (history, logs, embedded Redis data, pid records); CMQ_HOME.
HOME = "~/.cloudmesh/cmq"

#: Bytes of staged inputs a machine's input cache may hold (inventory: ``cache: 10GiB``).
CACHE_CAPACITY = 10 * 1024 ** 3

#: Jobs a machine runs at once when the inventory does not say.
SLOTS = 1

#: Directory on the machine where jobs run (created on first use).
WORKDIR = "~/.cmq"

#: Sessions sshd accepts on one connection (sshd_config MaxSessions, default 10).
MAX_SESSIONS = 10

#: Sessions per ssh master kept free for cancel/kill/probe commands.
RESERVED_SESSIONS = 2

#: Seconds an ssh master stays open after its last session.
CONTROL_PERSIST = 600

#: Seconds ssh waits for a TCP connection before it calls the machine unreachable.
CONNECT_TIMEOUT = 10

#: Bytes of stdout and of stderr kept in a job's result (the tail); the full output is in
#: the worker's log files.
OUTPUT_CAP = 64 * 1024

#: Seconds the broker waits for an acknowledgement before it hands a message out again.
VISIBILITY_TIMEOUT = 300

#: Seconds between the broker transport's sweeps that hand out unacknowledged messages.
RESTORE_INTERVAL = 10

#: Seconds a worker's claim on a running job lives without a heartbeat: after its worker
#: died, the job runs again this long afterwards (not sooner: it may still be running).
CLAIM_TTL = 20
#: How often the Redis that cmq starts writes its append-only file to disk: ``always``
#: (before it answers a write, so a crash of Redis or of the machine loses no accepted
#: job) or ``everysec`` (faster; a crash may lose the last second of writes).
REDIS_FSYNC = "always"
#: Replicas of the broker that must have the writes that accept, start and end a job
#: before cmq goes on (Redis WAIT; at most as many as are connected; 0: never wait), and
#: seconds to wait for them: replication is asynchronous, and a failover to a replica
#: that lacks them would lose them (see cmqueue.queue.broker).
REPLICA_ACKS = 1
#: Seconds a command waits for a Sentinel group to name a new primary (a failover takes
#: the sentinels' down-after time and an election) before it says the broker is away.
FAILOVER_WAIT = 60
REPLICA_TIMEOUT = 1.0
#: Seconds a machine of a relayed put waits for a byte from its feeder before it is fed
#: by another machine, or by the controller (see cmqueue.transfer.relay).
RELAY_STALL = 15.0
#: Seconds the first job that needs a shared input (one that several jobs of a batch
#: stage) waits for the batch's other machines that need it, before their relay starts;
#: a machine that asks later copies it directly.
RELAY_GATHER = 1.0
#: Seconds a worker waits for the broker to come back before it gives up reporting a
#: job's outcome (the job is then handed out again after the visibility timeout).
BROKER_WAIT = 600
#: Seconds between the recorder's sweeps that put the messages of dead workers back on
#: their queues (see cmqueue.queue.orphans).
ORPHAN_SWEEP = 2
#: Seconds between the recorder's looks for maps whose reduce was never sent (see
#: cmqueue.queue.rescue), and how long after a map's last member ended it is sent again.
RESCUE_INTERVAL = 10
RESCUE_GRACE = 30
#: The time zone in which the cron fields of schedules are read (settings: schedule_timezone).
SCHEDULE_TIMEZONE = "UTC"
#: Seconds the recorder waits at most between looks at the schedules (a change announced
#: on the broker wakes it at once), and how late a due time may be fired before it counts
#: as missed (``--catchup=skip`` skips it then).
SCHEDULE_CHECK = 10
SCHEDULE_LATE = 60
#: Seconds after which a message handed out to a worker that did not note it (the broker
#: went away just then) is put back on its queue.
ORPHAN_GRACE = 10
#: Seconds a worker's or recorder's lease lasts without renewal (see cmqueue.queue.lease).
LEASE_TTL = 15
#: How many machines a worker opens at once (ssh masters and sessions) when it starts:
#: paced so that sshd's MaxStartups (10 by default) and the local CPU are not overrun.
START_PARALLEL = 8
#: Worker processes `cmq up` starts for the ssh and local machines (0: one per CPU, and
#: no more than there are machines); each serves its share of the machines.
WORKER_PROCESSES = 0

#: Seconds a job's "done" marker is kept, so a late redelivery is recognised as done.
DONE_TTL = 7 * 24 * 3600

#: Seconds between a SIGTERM to a timed-out or cancelled job and the SIGKILL.
KILL_GRACE = 3

#: Seconds between probes of a machine that was found unreachable.
PROBE_INTERVAL = 2

#: Seconds facts about a machine stay fresh: `--where` gathers older ones again first.
FACTS_MAX_AGE = 3600
#: Seconds a gather of facts waits for its machines' answers before it cancels the rest.
FACTS_TIMEOUT = 60
#: Seconds one of the inventory's own probes (`facts:`) may run on a machine.
FACTS_PROBE_TIMEOUT = 10

#: Times a job is moved on after its machine was unreachable before it is declared lost.
MAX_REROUTES = 20

#: Port the embedded Redis listens on when none is configured (the next free one is used).
EMBEDDED_REDIS_PORT = 6390

#: Port Flower (the web view) listens on, on 127.0.0.1; 0: `cmq up` starts no Flower.
FLOWER_PORT = 5555
#: Port of `cmq serve` (the REST API and the console) on 127.0.0.1.
SERVE_PORT = 8765

#: Redis stream that carries job events from workers to the history store.
EVENT_STREAM = "cmq:events"

#: Name of the Celery queue every worker consumes (untargeted jobs).
SHARED_QUEUE = "cmq.any"

#: Name of the Celery queue of host jobs: work done in a worker process on this host,
#: not on a machine (storage transfers of `cmq storage --parallel`, cloud actions of `cmq
#: cloud`), consumed by every worker that runs here (not by agents: the files and the
#: credentials are here).
HOST_QUEUE = "cmq.host"

#: Attempts after a storage transfer job failed (each attempt skips files already there).
STORAGE_RETRIES = 2

#: Lines of stderr printed for each failed job by ``--wait``.
FAILURE_TAIL_LINES = 5
#: The address the embedded Redis listens on (besides 127.0.0.1) and agents with
#: ``broker_access: tls`` connect to (settings: broker_bind). Anything but loopback needs
#: ``cmq up --tls``: the broker is then reachable from the network, on TLS only.
BROKER_BIND = "127.0.0.1"

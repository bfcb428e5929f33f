"""Which history stores read the event stream, and how far each got, so that the stream
is trimmed only up to what every live store applied.

Each store that applies events (the recorder's, a controller's own SQLite, a command
waiting for its jobs) marks its cursor in a Redis hash beside the stream, stamped with
the broker's clock; a command marks it before it sends jobs, so the events of its jobs
stay until it has read them. Trimming drops only the entries that every store marked
within READER_TTL has applied: a second controller with a store of its own (a laptop's
SQLite beside a stack's recorder) still finds the events of its jobs. A store silent for
READER_TTL no longer holds the stream back.
"""

from __future__ import annotations

from typing import Any

#: Seconds after its last mark that a store stops holding the stream back.
READER_TTL = 600

# KEYS: the readers hash. ARGV: reader, cursor. Marks the reader at the broker's time.
_MARK = """
local now = redis.call('TIME')[1]
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. now)
return now
"""

# KEYS: the stream, the readers hash. ARGV: reader, cursor, ttl. Marks the reader, forgets
# readers silent for ttl, and trims the stream below the lowest cursor of the others.
_TRIM = """
local now = tonumber(redis.call('TIME')[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ' ' .. now)
local function parts(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms or 0), tonumber(seq or 0)
end
local floor = ARGV[2]
local fms, fseq = parts(floor)
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local cursor, stamp = string.match(all[i + 1], '^(%S+) (%d+)$')
  if not stamp or now - tonumber(stamp) > tonumber(ARGV[3]) then
    redis.call('HDEL', KEYS[2], all[i])
  else
    local ms, seq = parts(cursor)
    if ms < fms or (ms == fms and seq < fseq) then
      floor, fms, fseq = cursor, ms, seq
    end
  end
end
redis.call('XTRIM', KEYS[1], 'MINID', '~', floor)
return floor
"""


def readers_key(stream: str) -> str:
    """The Redis hash of the stores reading ``stream``: reader -> ``CURSOR TIME``."""
    return f"{stream}:readers"


def mark(client: Any, stream: str, reader: str, cursor: str) -> None:
    """Say that store ``reader`` has applied ``stream`` up to ``cursor`` (``0-0``: none)."""
    client.eval(_MARK, 1, readers_key(stream), reader, cursor or "0-0")


def trim(client: Any, stream: str, reader: str, cursor: str) -> str:
    """Mark ``reader`` at ``cursor``, then drop the entries every live reader applied;
    returns the id the stream was trimmed below."""
    floor = client.eval(_TRIM, 2, stream, readers_key(stream), reader, cursor or "0-0", READER_TTL)
    return floor.decode() if isinstance(floor, bytes) else str(floor)

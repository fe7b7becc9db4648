#!/usr/bin/env bash
# tansu 0.6's SQLite storage has no index on its `header` table, and looks up the headers of
# every record it serves with a full scan of that table: reading a topic gets quadratically
# slower as the database grows (about 6 ms per record at 60,000 headers; omni's records carry
# CloudEvents headers), and its single storage task then starves every other client. This adds
# the index (lookups become O(log n)); tansu creates its tables with "if not exists" and drops
# nothing, so the index stays. Safe to run while tansu runs; waits for the table to exist.
#
#   deploy/local/tansu-index.sh PATH/TO/tansu.db
set -euo pipefail
db=${1:?usage: tansu-index.sh PATH/TO/tansu.db}
for _ in $(seq 100); do
  if sqlite3 "$db" "CREATE INDEX IF NOT EXISTS omni_header_topition_offset ON header(topition, offset_id);" 2>/dev/null; then
    exit 0
  fi
  sleep 0.1
done
echo "tansu-index.sh: could not index $db (no header table yet?)" >&2
exit 1

#!/usr/bin/env bash
# The ghost sweep (internal/pipeline/sweep.h) against a real nats-server.
# Ghosts (task messages left in the stream behind the consumer's ack floor)
# appear in the work-queue task stream only by accident, after nats-server is
# killed with SIGKILL (tests/chaos/nats_restart.sh); a limits-retention stream
# keeps every acked message, so tests/support/sweep_ghosts makes them there
# at will: 30 tasks fetched and acked, 20 of them with a stored Result
# (COMPLETED or FAILED), 10 without; then 3 more tasks beyond the ack floor,
# with results. The sweep, at most 4 messages a run:
#  - removes exactly the 20 acked tasks whose Result is stored,
#  - leaves the 10 without a Result (and names them), and the 3 beyond the floor,
#  - takes several runs (the bound holds) and ends at the floor;
# a second sweep finds nothing more to remove (idempotent).
source "$(dirname "$0")/lib.sh"
SG="$AQ_BIN/tests/support/sweep_ghosts"
[ -x "$SG" ] || fail "sweep_ghosts not built"

start_nats
agentq init > /dev/null
"$SG" setup --url "$AGENTQ_NATS_URL" --n 30 --after 3 > "$T/setup.json" || fail "setup"
note "setup: $(cat "$T/setup.json")"
jq -e '.with_result == 20 and .without_result == 10' "$T/setup.json" > /dev/null || fail "unexpected setup"

"$SG" sweep --url "$AGENTQ_NATS_URL" --max 4 > "$T/sweep1.json" || fail "sweep"
note "sweep: $(cat "$T/sweep1.json")"
jq -e '.ack_floor == 30' "$T/sweep1.json" > /dev/null || fail "ack floor is not 30"
jq -e '.deleted == 20' "$T/sweep1.json" > /dev/null || fail "did not remove the 20 settled tasks"
jq -e '.kept == 10 and .examined == 30' "$T/sweep1.json" > /dev/null || fail "kept/examined wrong"
jq -e '.msgs_left == 13' "$T/sweep1.json" > /dev/null || fail "the stream should keep 10 unsettled + 3 beyond the floor"
jq -e '.runs >= 8' "$T/sweep1.json" > /dev/null || fail "the bound of 4 messages per run did not hold"
want=$(seq 0 3 27 | sed 's/^/g-/' | jq -R . | jq -sc .)
jq -e --argjson w "$want" '.kept_ids == $w' "$T/sweep1.json" > /dev/null \
    || fail "kept the wrong tasks: $(jq -c .kept_ids "$T/sweep1.json"), want $want"

"$SG" sweep --url "$AGENTQ_NATS_URL" --max 1000 > "$T/sweep2.json" || fail "second sweep"
note "again: $(cat "$T/sweep2.json")"
jq -e '.deleted == 0 and .kept == 10 and .msgs_left == 13 and .runs == 1' "$T/sweep2.json" > /dev/null \
    || fail "a second sweep changed something"
echo "PASS"

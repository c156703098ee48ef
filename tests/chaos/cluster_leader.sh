#!/usr/bin/env bash
# A 3-node nats-server cluster on loopback (own ports, routes, store dirs,
# JetStream, monitoring); every stream and the bucket with 3 replicas; the
# worker connected to all three URLs. In the middle of the run the leader of
# the task stream is killed (SIGKILL), then brought back. Every task ends
# COMPLETED, nothing is lost, the worker never exits.
source "$(dirname "$0")/chaos_lib.sh"
N=${N:-4000}
CONC=${CONC:-32}   # 32 calls of 100 ms: about 300 tasks/s when the cluster keeps up
ACK_WAIT=${ACK_WAIT:-5s}

# N distinct TCP ports on 127.0.0.1 that nothing uses in any state, below the
# ephemeral range (32768+ here) so that no outgoing connection takes them.
free_ports() {
    local n=$1 p out=() lo
    lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    [ "$lo" -gt 12000 ] || lo=32768
    while [ "${#out[@]}" -lt "$n" ]; do
        p=$((10000 + RANDOM % (lo - 10000)))
        ss -Htan "sport = :$p" | grep -q . && continue
        [[ " ${out[*]} " == *" $p "* ]] && continue
        out+=("$p")
    done
    echo "${out[@]}"
}
declare -A CPORT RPORT HPORT NPID

write_configs() {
    local ports i=0 n routes
    read -r -a ports <<< "$(free_ports 9)"
    for n in n1 n2 n3; do
        CPORT[$n]=${ports[$i]}; RPORT[$n]=${ports[$((i + 3))]}; HPORT[$n]=${ports[$((i + 6))]}
        i=$((i + 1))
    done
    routes="nats-route://127.0.0.1:${RPORT[n1]}, nats-route://127.0.0.1:${RPORT[n2]}, nats-route://127.0.0.1:${RPORT[n3]}"
    for n in n1 n2 n3; do
        rm -rf "${T:?}/$n"; mkdir -p "$T/$n"
        cat > "$T/$n.conf" <<CONF
server_name: $n
listen: 127.0.0.1:${CPORT[$n]}
http: 127.0.0.1:${HPORT[$n]}
max_payload: 8MB
jetstream { store_dir: "$T/$n" }
cluster {
  name: agentq-chaos
  listen: 127.0.0.1:${RPORT[$n]}
  routes: [ $routes ]
}
CONF
    done
}

start_node() {
    "$NATS_SERVER" -c "$T/$1.conf" >> "$T/$1.log" 2>&1 &
    NPID[$1]=$!
    PIDS+=("${NPID[$1]}")
}
jsz() { curl -sf "http://127.0.0.1:${HPORT[$1]}/jsz?accounts=true&streams=true"; }
meta_leader() { jsz "$1" | jq -er '.meta_cluster.leader // empty'; }
# The server name leading the task stream's Raft group, as node $1 sees it.
stream_leader() {
    jsz "$1" | jq -er '[.account_details[]?.stream_detail[]? | select(.name == "AGENTQ_TASKS") | .cluster.leader // empty][0] // empty'
}
has_meta_leader() { [ -n "$(meta_leader "$1" 2>/dev/null)" ]; }
leader_is_not() { local l; l=$(stream_leader "$1" 2>/dev/null) && [ -n "$l" ] && [ "$l" != "$2" ]; }
node_current() { jsz "$1" | jq -e '.meta_cluster.leader != null' > /dev/null; }
all_alive() { local n; for n in n1 n2 n3; do kill -0 "${NPID[$n]}" 2>/dev/null || return 1; done; }

# Start the cluster; a port taken meanwhile by something else makes a node
# exit at once: then try again on other ports.
started=0
for try in 1 2; do
    write_configs
    for n in n1 n2 n3; do start_node "$n"; done
    ok=1
    for n in n1 n2 n3; do wait_until 10 grep -q "Server is ready" "$T/$n.log" || ok=0; done
    sleep 0.5
    if [ "$ok" -eq 1 ] && all_alive && wait_until 20 has_meta_leader n1; then started=1; break; fi
    note "cluster start $try failed: $(grep -h FTL "$T"/n?.log | tail -3)"
    for n in n1 n2 n3; do
        kill -KILL "${NPID[$n]}" 2>/dev/null || true; reap "${NPID[$n]}"
        mv "$T/$n.log" "$T/$n-try$try.log"
    done
done
[ "$started" -eq 1 ] || fail "could not start the 3-node cluster"
export AGENTQ_NATS_URL="nats://127.0.0.1:${CPORT[n1]},nats://127.0.0.1:${CPORT[n2]},nats://127.0.0.1:${CPORT[n3]}"

start_sim "${SIM_NO_LIMITS[@]}" --latency=100
wait_until "$(within 20)" "$AGENTQ" init --replicas=3 --ack_wait="$ACK_WAIT" || fail "agentq init --replicas=3 failed: $("$AGENTQ" init --replicas=3 2>&1)"
replicas=$(jsz n1 | jq '[.account_details[]?.stream_detail[]? | select(.name == "AGENTQ_TASKS") | .config.num_replicas // (.cluster.replicas | length + 1)][0]')
note "task stream replicas: $replicas"
stream_has_leader() { [ -n "$(stream_leader "$1" 2>/dev/null)" ]; }
wait_until "$(within 20)" stream_has_leader n1 || fail "the task stream has no leader"
make_tasks "$N" cl > "$T/tasks.jsonl"
ids_of "$T/tasks.jsonl" > "$T/ids.txt"
agentq submit --file "$T/tasks.jsonl" --quiet 2> "$T/submit.log"

WORKER_NAME=w1 start_worker --concurrency="$CONC" --ack_wait="$ACK_WAIT"
W=$WORKER_PID

wait_until "$(within 40)" stat_at_least results $((N / 4)) || fail "no progress: $(agentq stats --json 2>&1)"
leader=$(stream_leader n1) || fail "cannot find the task stream's leader: $(jsz n1 | head -c 2000)"
at=$(stat_of results)
[ "$at" -lt "$N" ] || fail "the run ended before the kill: nothing was tested"
note "kill -9 $leader (leader of AGENTQ_TASKS) at $at results"
kill -KILL "${NPID[$leader]}"; reap "${NPID[$leader]}"
others=(); for n in n1 n2 n3; do [ "$n" = "$leader" ] || others+=("$n"); done
t0=$SECONDS
wait_until "$(within 20)" leader_is_not "${others[0]}" "$leader" || fail "no new leader for AGENTQ_TASKS after 20 s"
new_leader=$(stream_leader "${others[0]}")
note "new leader $new_leader after $((SECONDS - t0)) s"
sleep 2
kill -0 "$W" 2>/dev/null || fail "the worker exited while $leader was down"
start_node "$leader"
note "$leader restarted at $(stat_of results 2>/dev/null || echo "?") results"
wait_until "$(within 20)" node_current "$leader" || fail "$leader did not rejoin"

wait_for_ids 60 "$T/ids.txt"
expect_stream_drained 30
kill -0 "$W" 2>/dev/null || fail "the worker exited"
chaos_verdict cluster_leader "kill -9 of the task stream's leader ($leader) in a 3-node R3 cluster, back after the election + 2 s" \
    "$T/ids.txt" $((2 * CONC))
[ "$CHAOS_COMPLETED" -eq "$N" ] || fail "only $CHAOS_COMPLETED of $N COMPLETED"
[ "$STREAM_LEFTOVERS" -eq 0 ] || note "stream_leftovers=$STREAM_LEFTOVERS"
kill -TERM "$W"; wait "$W" || fail "the worker did not exit 0 on SIGTERM"
forget_pid "$W"

# Several Slurm "hosts" on one machine: one network namespace per node, joined by veth
# links to a bridge. Sourced by local-cluster.sh (needs its log/die/running helpers).
#
# Addresses come from 198.18.0.0/15 (RFC 2544, reserved for benchmarking), so they can
# never clash with a real network. The namespaces get no default route and the machine
# does not forward: nothing sent from a node can leave the box.
#
#   bridge tleg-br0 198.18.0.1/24 (root namespace: slurmctld, sbatch, squeue)
#   node i: namespace tleg-n<i>, veth tleg-v<i> <-> eth0 198.18.0.<10+i>, hostname tleg-n<i>
#
# Traps found on this kind of machine (shared/MULTINODE.md):
# - enter a namespace with nsenter, not `ip netns exec`: that remounts /sys, which hides
#   /sys/fs/cgroup, and slurmd then dies;
# - `unshare --uts` gives each slurmd (and every job step it starts) its own hostname.

NET_PREFIX=198.18.0
BRIDGE=tleg-br0
NODE_PREFIX=tleg-n
HOSTS_MARK="# tleg-dist local-cluster node"

node_ns() { echo "$NODE_PREFIX$1"; }
node_addr() { echo "$NET_PREFIX.$((10 + $1))"; }
node_link() { echo "tleg-v$1"; }

our_namespaces() {  # every namespace this script may have made, whatever N was
    ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$NODE_PREFIX[0-9]+$" || true
}

net_up() {  # N -> bridge, one namespace + veth per node, /etc/hosts names
    local n=$1 i ns link
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        if grep -q " $NET_PREFIX\." < <(ip -o addr show); then  # not `ip | grep -q`: SIGPIPE + pipefail
            die "$NET_PREFIX.0/24 is already in use on this machine (not by $BRIDGE); stop whatever uses it"
        fi
        ip link add "$BRIDGE" type bridge
    fi
    ip addr replace "$NET_PREFIX.1/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    for ((i = 1; i <= n; i++)); do
        ns=$(node_ns "$i"); link=$(node_link "$i")
        [[ -e /var/run/netns/$ns ]] || ip netns add "$ns"
        ip link show "$link" >/dev/null 2>&1 || ip link add "$link" type veth peer name eth0 netns "$ns"
        ip link set "$link" master "$BRIDGE" up
        ip -n "$ns" addr replace "$(node_addr "$i")/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" link set lo up
    done
    hosts_set "$n"
}

hosts_set() {  # N -> exactly our N lines in /etc/hosts (written in place: it may be a bind mount)
    local n=$1 i kept
    kept=$(grep -vF "$HOSTS_MARK" /etc/hosts || true)
    {
        printf '%s\n' "$kept"
        for ((i = 1; i <= n; i++)); do printf '%s %s %s\n' "$(node_addr "$i")" "$(node_ns "$i")" "$HOSTS_MARK"; done
    } >/etc/hosts.tleg.tmp
    cat /etc/hosts.tleg.tmp >/etc/hosts
    rm -f /etc/hosts.tleg.tmp
}

kill_namespace_procs() {  # ns -> TERM, then KILL, every process whose network namespace it is
    local ns=$1 pids end
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [[ -n $pids ]] || return 0
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    end=$((SECONDS + 5))
    while [[ -n $(ip netns pids "$ns" 2>/dev/null) ]] && ((SECONDS < end)); do sleep 0.1; done
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    if [[ -n $pids ]]; then
        # e.g. an srun whose step could not be delivered: it ignores SIGTERM (MULTINODE.md)
        log "killing what ignored SIGTERM in $ns: $(echo $pids)"
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
    fi
}

net_down() {  # remove every namespace, link, bridge and /etc/hosts line of ours
    local ns link
    for ns in $(our_namespaces); do
        kill_namespace_procs "$ns"
        ip netns del "$ns"
        log "removed namespace $ns"
    done
    for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E '^tleg-v[0-9]+$' || true); do
        ip link del "$link" 2>/dev/null || true
    done
    if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE"; log "removed bridge $BRIDGE"; fi
    hosts_set 0
}

start_node_slurmd() {  # i -> slurmd for node i inside its namespace, with its own hostname
    local ns; ns=$(node_ns "$1")
    nsenter --net="/var/run/netns/$ns" unshare --uts sh -c 'hostname "$1" && exec slurmd -N "$1"' sh "$ns"
}

# Faults for trying what a user meets on a real cluster (docs/cluster.md); the tests use them.
node_kill() {  # name -> SIGKILL every process of that node: its slurmd, steps and ranks
    local ns=$1
    [[ -e /var/run/netns/$ns ]] || die "no node $ns"
    local pids; pids=$(ip netns pids "$ns")
    # shellcheck disable=SC2086
    [[ -z $pids ]] || kill -KILL $pids
    log "killed every process of $ns ($(echo $pids | wc -w))"
}

link_set() {  # name up|down -> the node's link on the bridge
    local ns=$1 state=$2
    [[ -e /var/run/netns/$ns ]] || die "no node $ns"
    ip link set "tleg-v${ns#"$NODE_PREFIX"}" "$state"
    log "$ns: link $state"
}

# Sourced by the bench scripts that pick their peers' ports themselves; the caller defines
# `die MESSAGE`.
#
# free_port sets PORT to a loopback port nobody listens on and this run has not handed out
# yet.
USED_PORTS=" "
PORT=
free_port() {
  local p i
  for ((i = 0; i < 200; i++)); do
    # Below the kernel's ephemeral range (32768+ by default): a port some connection of the
    # run uses as its source port answers no connect, yet cannot be bound.
    p=$((20000 + RANDOM % 12000))
    [[ $USED_PORTS == *" $p "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      USED_PORTS+="$p "
      PORT=$p
      return 0
    fi
  done
  die "no free port found"
}

#!/usr/bin/env bash
# Side-by-side peer baselines (issue 6, item 4): one seeded set of events (default 2,000,000 over 10,000 customers, 1%
# duplicates by event id) pushed through AlphaMesh end to end and through the approaches a user would pick instead,
# each on a fresh server of its own that this script starts on loopback in a temporary directory and stops again:
#   alphamesh        the Release server (as load-tests/run.sh starts it), the client SDK, the usage API
#   postgres-insert  a private PostgreSQL cluster: events table, prepared INSERT ... unnest ... ON CONFLICT DO NOTHING
#   postgres-copy    the same table, binary COPY into a staging table + INSERT ... SELECT ... ON CONFLICT DO NOTHING
#   redis-event      redis-server: SET NX EX + HINCRBY in one Lua script per event, pipelined
#   redis-batch      the same script over 100 events per call
#   clickhouse       clickhouse-server (Debian's 18.16): RowBinary inserts over HTTP into a MergeTree, no dedupe
# Then prints one table (events/s, CPU per million events, peak memory, exactness, ratios AlphaMesh/baseline) and
# writes it to benchmarks/results/peers-<UTC timestamp>.md. Missing Debian packages are installed (needs root).
#
#   benchmarks/peers/run.sh                                  # everything, defaults (a few minutes)
#   benchmarks/peers/run.sh --events 500000 --systems alphamesh,postgres-copy
#
# Options: --events N, --customers N, --duplicates R (0.01), --seed N (1), --lanes N (parallel senders for every
# system; default alphamesh 4, redis 8, others 2), --systems a,b,... (default all six), --redis-fsync always|everysec
# (default always: a reply only after fsync, like AlphaMesh's). SKIP_BUILD=1 skips the Release build.
set -euo pipefail
cd "$(dirname "$0")/../.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

all_systems="alphamesh,postgres-insert,postgres-copy,redis-event,redis-batch,clickhouse"
systems=$all_systems
redis_fsync=always
common=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --events|--customers|--duplicates|--seed|--lanes)
      [[ $# -ge 2 ]] || { echo "error: $1 needs a value" >&2; exit 64; }
      common+=("$1" "$2"); shift 2 ;;
    --systems)
      [[ $# -ge 2 ]] || { echo "error: --systems needs a value" >&2; exit 64; }
      systems=$2; shift 2
      for s in ${systems//,/ }; do
        [[ ",$all_systems," == *",$s,"* ]] || { echo "error: --systems: unknown system '$s' (one of $all_systems)" >&2; exit 64; }
      done ;;
    --redis-fsync)
      [[ $# -ge 2 && ( "$2" == always || "$2" == everysec ) ]] || { echo "error: --redis-fsync takes always or everysec" >&2; exit 64; }
      redis_fsync=$2; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (--help lists them)" >&2; exit 64 ;;
  esac
done
command_line="benchmarks/peers/run.sh${common[*]:+ ${common[*]}}"
if [[ $systems != "$all_systems" ]]; then command_line+=" --systems $systems"; fi
if [[ $redis_fsync != always ]]; then command_line+=" --redis-fsync $redis_fsync"; fi
wants() { [[ ",$systems," == *",$1"* ]]; }

# --- packages ---------------------------------------------------------------------------------------------------
install_package() { # $1 package, $2 why
  if [[ "$(id -u)" != 0 ]]; then
    echo "error: $2 needs the Debian package '$1': run 'apt-get install -y $1' as root, or run this script as root." >&2; exit 1
  fi
  echo "Installing the Debian package '$1' ($2)..."
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$1" >/dev/null; then
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$1" >/dev/null \
      || { echo "error: could not install '$1' with apt-get." >&2; exit 1; }
  fi
}
command -v curl >/dev/null || install_package curl "waiting for the servers"
if wants alphamesh || wants postgres; then
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || install_package postgresql "the PostgreSQL baseline and AlphaMesh's billing database"
fi
if wants redis; then command -v redis-server >/dev/null || install_package redis-server "the Redis baseline"; fi
if wants clickhouse; then command -v clickhouse-server >/dev/null || install_package clickhouse-server "the ClickHouse baseline"; fi

# --- build ------------------------------------------------------------------------------------------------------
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  echo "Building Release (src/Server, benchmarks/AlphaMesh.PeerBaselines)..."
  dotnet build src/Server -c Release -warnaserror -v quiet -nologo >/dev/null
  dotnet build benchmarks/AlphaMesh.PeerBaselines -c Release -warnaserror -v quiet -nologo >/dev/null
fi
tool=(dotnet benchmarks/AlphaMesh.PeerBaselines/bin/Release/net10.0/AlphaMesh.PeerBaselines.dll)
export ALPHAMESH_COMMIT; ALPHAMESH_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)

# --- servers ----------------------------------------------------------------------------------------------------
work=$(mktemp -d -t alphamesh-peers-XXXXXX)
chmod 0755 "$work" # PostgreSQL runs as the postgres user and must reach its directory
mkdir "$work/results"
server_pid=""
stop_server=""
cleanup() {
  if [[ -n "$stop_server" ]]; then $stop_server || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# A loopback port nothing listens on, below the kernel's ephemeral range (a port from that range can be taken by an
# outgoing connection between this check and the server's bind).
free_port() {
  local low=10000 high
  high=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  for _ in $(seq 1 100); do
    local port=$((low + RANDOM % (high - low)))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return; fi
  done
  echo "error: no free loopback port found" >&2; exit 1
}

wait_until() { # $1 what, $2 log, then the command that succeeds when ready
  local what=$1 log=$2; shift 2
  for _ in $(seq 1 300); do
    if "$@" >/dev/null 2>&1; then return; fi
    if [[ -n "$server_pid" ]] && ! kill -0 "$server_pid" 2>/dev/null; then
      echo "error: $what exited during start:" >&2; tail -n 30 "$log" >&2; exit 1
    fi
    sleep 0.2
  done
  echo "error: $what was not ready in 60 s:" >&2; tail -n 30 "$log" >&2; exit 1
}

stop_pid() { # SIGTERM, then wait for the exit
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
  stop_server=""
}

as_postgres() { if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)

run_alphamesh() {
  local data=$work/alphamesh grpc rest key
  mkdir "$data"; chmod 0755 "$data"
  grpc=$(free_port); rest=$(free_port)
  key="peers-$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')"
  # From its output directory, so that its appsettings.json is the configuration; only the ports are moved.
  (cd src/Server/bin/Release/net10.0 && ALPHAMESH_BOOTSTRAP_KEY="$key" \
    Kestrel__Endpoints__Rest__Url="http://127.0.0.1:$rest" Kestrel__Endpoints__Grpc__Url="http://127.0.0.1:$grpc" \
    exec dotnet AlphaMesh.Server.dll --data-dir "$data") >"$work/alphamesh.log" 2>&1 &
  server_pid=$!; stop_server=stop_pid
  wait_until "the AlphaMesh server" "$work/alphamesh.log" curl -fsS --max-time 1 "http://127.0.0.1:$rest/healthz"
  # Its billing database (an embedded PostgreSQL it started, idle but for a key poll a second) counts as server CPU too.
  local billing=()
  [[ -f "$data/postgres/postmaster.pid" ]] && billing=(--server-pid "$(head -n 1 "$data/postgres/postmaster.pid")")
  "${tool[@]}" run --system alphamesh --out "$work/results/alphamesh.json" "${common[@]}" --base-time "$base_time" \
    --server-pid "$server_pid" "${billing[@]}" --grpc "http://127.0.0.1:$grpc" --rest "http://127.0.0.1:$rest" --key "$key"
  stop_pid
  if grep -q '"LogLevel":"\(Error\|Critical\)"' "$work/alphamesh.log"; then
    echo "The AlphaMesh server logged errors:" >&2; grep '"LogLevel":"\(Error\|Critical\)"' "$work/alphamesh.log" | head -n 5 >&2
  fi
  # Its embedded PostgreSQL stops with it; make sure before the next system is measured.
  if [[ ${#billing[@]} -gt 0 ]]; then
    for _ in $(seq 1 100); do kill -0 "${billing[1]}" 2>/dev/null || break; sleep 0.1; done
  fi
}

pg_data=""
stop_postgres() {
  as_postgres "$pg_bin/pg_ctl" -D "$pg_data" -m fast -w stop >/dev/null || true
  server_pid=""; stop_server=""
}

run_postgres() { # $1 postgres-insert | postgres-copy
  [[ -n "$pg_bin" ]] || { echo "error: no PostgreSQL under /usr/lib/postgresql/*/bin" >&2; exit 1; }
  local dir=$work/$1 port
  mkdir "$dir"; [[ "$(id -u)" == 0 ]] && chown postgres "$dir"
  pg_data=$dir/data; port=$(free_port)
  as_postgres "$pg_bin/initdb" -D "$pg_data" -U postgres --auth=trust -E UTF8 --locale=C >"$dir/initdb.log"
  # A private cluster, so its CPU and memory are this run's alone and its settings can be an expert's: durable
  # commits (fsync, synchronous_commit on: a COMMIT returns after its WAL is flushed, like an AlphaMesh reply),
  # shared_buffers large enough to hold the table and its index, WAL room so that no checkpoint falls in the run.
  as_postgres "$pg_bin/pg_ctl" -D "$pg_data" -l "$dir/server.log" -w -t 60 start -o \
    "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c shared_buffers=1GB -c max_wal_size=8GB -c checkpoint_timeout=30min" >/dev/null
  server_pid=$(head -n 1 "$pg_data/postmaster.pid"); stop_server=stop_postgres
  as_postgres "$pg_bin/psql" -h 127.0.0.1 -p "$port" -U postgres -q -c "CREATE DATABASE peers" postgres
  "${tool[@]}" run --system "$1" --out "$work/results/$1.json" "${common[@]}" --base-time "$base_time" --server-pid "$server_pid" \
    --postgres "Host=127.0.0.1;Port=$port;Username=postgres;Database=peers;Command Timeout=600"
  stop_postgres
}

run_redis() { # $1 redis-event | redis-batch
  local dir=$work/$1 port
  mkdir "$dir"; port=$(free_port)
  # Durability as AlphaMesh's by default: the AOF is fsynced before a reply (appendfsync always); no RDB snapshots.
  redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --daemonize no --save "" --appendonly yes \
    --appendfsync "$redis_fsync" --logfile "$dir/redis.log" &
  server_pid=$!; stop_server=stop_pid
  wait_until "redis-server" "$dir/redis.log" redis-cli -h 127.0.0.1 -p "$port" ping
  "${tool[@]}" run --system "$1" --out "$work/results/$1.json" "${common[@]}" --base-time "$base_time" --server-pid "$server_pid" \
    --redis "127.0.0.1:$port"
  stop_pid
}

run_clickhouse() {
  local dir=$work/clickhouse port tcp
  mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files"; port=$(free_port); tcp=$(free_port)
  cat >"$dir/config.xml" <<EOF
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>$dir/server.log</log><errorlog>$dir/server.err.log</errorlog></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>$port</http_port>
  <tcp_port>$tcp</tcp_port>
  <path>$dir/data/</path>
  <tmp_path>$dir/tmp/</tmp_path>
  <user_files_path>$dir/user_files/</user_files_path>
  <users_config>/etc/clickhouse-server/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>5368709120</mark_cache_size>
  <timezone>UTC</timezone>
</yandex>
EOF
  clickhouse-server --config-file="$dir/config.xml" >"$dir/stdout.log" 2>&1 &
  server_pid=$!; stop_server=stop_pid
  wait_until "clickhouse-server" "$dir/server.err.log" curl -fsS --max-time 1 "http://127.0.0.1:$port/ping"
  "${tool[@]}" run --system clickhouse --out "$work/results/clickhouse.json" "${common[@]}" --base-time "$base_time" --server-pid "$server_pid" \
    --clickhouse "http://127.0.0.1:$port/"
  stop_pid
}

# The same events for every system: the seed and this start of their hour.
base_time=$(date -u -d '-62 minutes' +%Y-%m-%dT%H:%M:00Z)
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
for system in ${all_systems//,/ }; do
  wants "$system" || continue
  echo
  case "$system" in
    alphamesh) run_alphamesh ;;
    postgres-*) run_postgres "$system" ;;
    redis-*) run_redis "$system" ;;
    clickhouse) run_clickhouse ;;
  esac
done

mkdir -p benchmarks/results
report=benchmarks/results/peers-$(date -u +%Y%m%dT%H%M%SZ).md
"${tool[@]}" report --results "$work/results" --out "$report" --command "$command_line"

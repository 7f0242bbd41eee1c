#!/usr/bin/env bash
# Checks built packages without installing them:
#   packaging/check-deb.sh target/debian/edge-node_*.deb target/debian/sync-hub_*.deb
# Unpacks each .deb into a temporary directory and checks the binary, the
# systemd unit, the config and the maintainer scripts; runs
# `systemd-analyze verify` on the unit where that command exists.
set -euo pipefail

if [ "$#" -eq 0 ]; then
  echo "usage: $0 PACKAGE.deb..." >&2
  exit 2
fi
command -v dpkg-deb >/dev/null || { echo "check-deb: dpkg-deb not found" >&2; exit 2; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

failures=0
fail() {
  echo "FAIL $deb_name: $*" >&2
  failures=$((failures + 1))
}
ok() {
  echo "ok   $deb_name: $*"
}

check_one() {
  local deb="$1"
  deb_name="$(basename "$deb")"
  if [ ! -f "$deb" ]; then
    fail "no such file: $deb"
    return
  fi

  local dir="$work/$deb_name"
  local root="$dir/root" control="$dir/control"
  mkdir -p "$root" "$control"
  dpkg-deb -x "$deb" "$root"
  dpkg-deb -e "$deb" "$control"

  local name
  name="$(dpkg-deb -f "$deb" Package)"
  ok "package $name $(dpkg-deb -f "$deb" Version)"

  # The binary.
  local bin="$root/usr/bin/$name"
  if [ -f "$bin" ] && [ -x "$bin" ]; then
    ok "usr/bin/$name is an executable file"
  else
    fail "usr/bin/$name is missing or not executable"
  fi

  # The store's package must not carry the hub (the `demo` feature is
  # off): no path into the sync_hub crate (a symbol, a log target) in its
  # binary.
  if [ "$name" = edge-node ] && [ -f "$bin" ]; then
    if grep -qa 'sync_hub::' "$bin"; then
      fail "usr/bin/edge-node carries the hub (build it with --no-default-features)"
    else
      ok "usr/bin/edge-node carries no sync_hub code"
    fi
  fi

  # The systemd unit (cargo-deb 3 installs units under usr/lib, older
  # releases under lib).
  local unit="" candidate
  for candidate in usr/lib/systemd/system lib/systemd/system; do
    if [ -f "$root/$candidate/$name.service" ]; then
      unit="$root/$candidate/$name.service"
      ok "$candidate/$name.service exists"
      break
    fi
  done
  if [ -z "$unit" ]; then
    fail "no $name.service under usr/lib/systemd/system or lib/systemd/system"
  fi

  local config="etc/$name/config.toml"
  if [ -f "$root/$config" ]; then
    ok "$config exists"
  else
    fail "$config is missing"
  fi

  if [ -n "$unit" ]; then
    local exec_line exec_bin config_arg
    exec_line="$(grep -E '^ExecStart=' "$unit" | tail -n 1 || true)"
    if [ -z "$exec_line" ]; then
      fail "the unit has no ExecStart="
    else
      # ExecStart=[prefixes]/path args...; drop systemd's -@:+! prefixes.
      exec_bin="$(printf '%s\n' "${exec_line#ExecStart=}" | awk '{print $1}' | sed 's/^[-@:+!]*//')"
      if [ -f "$root$exec_bin" ] && [ -x "$root$exec_bin" ]; then
        ok "ExecStart binary $exec_bin is in the package"
      else
        fail "ExecStart binary $exec_bin is not an executable in the package"
      fi
      config_arg="$(printf '%s\n' "$exec_line" | sed -n 's/.*--config[= ]\([^ ]*\).*/\1/p')"
      if [ -z "$config_arg" ]; then
        fail "ExecStart passes no --config: $exec_line"
      elif [ -f "$root$config_arg" ]; then
        ok "ExecStart --config $config_arg is in the package"
      else
        fail "ExecStart --config $config_arg is not in the package"
      fi
    fi
  fi

  # Maintainer scripts and conffiles.
  if [ -f "$control/postinst" ] && [ -x "$control/postinst" ]; then
    ok "postinst exists and is executable"
    if grep -q "adduser\|useradd" "$control/postinst"; then
      ok "postinst creates the system user"
    else
      fail "postinst does not create a system user"
    fi
    if grep -q '#DEBHELPER#' "$control/postinst"; then
      fail "postinst still holds the #DEBHELPER# token"
    fi
    if command -v sh >/dev/null && ! sh -n "$control/postinst"; then
      fail "postinst has a shell syntax error"
    fi
  else
    fail "postinst is missing or not executable"
  fi
  if [ -f "$control/conffiles" ] && grep -qx "/$config" "$control/conffiles"; then
    ok "conffiles lists /$config"
  else
    fail "conffiles does not list /$config"
  fi

  # systemd-analyze verify checks that the ExecStart binary exists on the
  # real filesystem, so verify a copy of the unit whose ExecStart points
  # into the unpacked tree.
  if [ -n "$unit" ]; then
    if command -v systemd-analyze >/dev/null; then
      local vdir="$dir/verify" out
      mkdir -p "$vdir"
      sed -E "s#^ExecStart=([-@:+!]*)/#ExecStart=\\1$root/#" "$unit" > "$vdir/$name.service"
      if out="$(systemd-analyze verify "$vdir/$name.service" 2>&1)"; then
        # verify exits 0 on unknown keys: any message about our unit fails.
        if printf '%s\n' "$out" | grep -F "$name.service" >/dev/null; then
          fail "systemd-analyze verify: $out"
        else
          ok "systemd-analyze verify $name.service"
        fi
      else
        fail "systemd-analyze verify: $out"
      fi
    else
      echo "skip $deb_name: systemd-analyze not found, unit not verified"
    fi
  fi
}

for deb in "$@"; do
  check_one "$deb"
done

if [ "$failures" -gt 0 ]; then
  echo "check-deb: $failures check(s) failed" >&2
  exit 1
fi
echo "check-deb: all checks passed"

# Installs Debian packages whose commands are missing (as root, or via sudo).
# Usage: ensure_packages PKG...   (package names double as command names,
# except redis-server/redis-cli which come together)
ensure_packages() {
  local missing=()
  for pkg in "$@"; do
    command -v "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  apt_install "${missing[@]}"
}

# Installs Debian packages unconditionally (as root, or via sudo): for
# packages that provide no command of the same name, such as python3-yaml;
# the caller decides whether they are missing.
# Usage: apt_install PKG...
apt_install() {
  [ $# -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing $*" >&2
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

#!/usr/bin/env bash
# Apply a c10m sysctl profile (sysctl.d format, as `c10m sysctl` writes it)
# to the running kernel, saving the previous values first so that they can
# be put back.
#
#   sysctl/apply.sh [--dry-run] [--save FILE] PROFILE
#       save the current values of the keys PROFILE changes to FILE (default:
#       ${TMPDIR:-/var/tmp}/c10m-sysctl-saved-<time>.conf), then apply PROFILE
#   sysctl/apply.sh [--dry-run] --restore FILE
#       put back the values saved in FILE
#   sysctl/apply.sh [--save FILE] --scoped PROFILE -- COMMAND [ARGS...]
#       apply PROFILE, run COMMAND, restore (also when COMMAND fails or is
#       interrupted); exits with COMMAND's status. For benchmarks.
#
# Rules:
# - A line whose comment above it starts with "[at least]" is a minimum: a
#   key whose current value already reaches it (every number) is kept.
# - A key written "-key = value" is optional: missing (module not loaded) or
#   read-only, it is skipped with a message.
# - If a required key cannot be written, the keys already changed are put
#   back and the script exits 1. The save file is written before any change.
# Exit codes: 0 done, 1 a key could not be set or restored, 2 bad usage.
# Writes /proc/sys directly, so it needs no procps, only root (or the
# network namespace's root for the per-namespace net.* keys).

set -uo pipefail

PROC_SYS=${C10M_PROC_SYS:-/proc/sys}

usage() {
  sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

die_usage() {
  echo "apply.sh: $*" >&2
  echo "run sysctl/apply.sh --help for usage" >&2
  exit 2
}

key_path() {
  local key=$1
  echo "$PROC_SYS/${key//.//}"
}

read_value() {
  # The value with whitespace runs collapsed to single spaces, as in a profile.
  local value
  value=$(tr -s '[:space:]' ' ' <"$(key_path "$1")" 2>/dev/null) || return 1
  value=${value# }
  echo "${value% }"
}

write_value() {
  local path
  path=$(key_path "$1")
  [ -e "$path" ] || return 1
  printf '%s\n' "$2" 2>/dev/null >"$path"
}

# Whether every number of $1 is >= the matching number of $2.
reaches() {
  local -a have=($1) want=($2)
  [ "${#have[@]}" -eq "${#want[@]}" ] || return 1
  local i
  for i in "${!want[@]}"; do
    [[ ${have[$i]} =~ ^[0-9]+$ && ${want[$i]} =~ ^[0-9]+$ ]] || return 1
    [ "${have[$i]}" -ge "${want[$i]}" ] || return 1
  done
  return 0
}

# Parses a sysctl.d file into the arrays KEYS, VALUES, OPTIONAL, AT_LEAST.
parse_file() {
  local file=$1 line key value at_least=0 optional
  KEYS=() VALUES=() OPTIONAL=() AT_LEAST=()
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line%$'\r'}
    if [[ $line =~ ^[[:space:]]*[\#\;] ]]; then
      [[ $line =~ ^[[:space:]]*\#[[:space:]]*\[at\ least\] ]] && at_least=1
      continue
    fi
    if [[ $line =~ ^[[:space:]]*$ ]]; then
      at_least=0
      continue
    fi
    if [[ ! $line =~ ^[[:space:]]*(-?)([A-Za-z0-9_./-]+)[[:space:]]*=[[:space:]]*(.*[^[:space:]])?[[:space:]]*$ ]]; then
      echo "apply.sh: $file: cannot read line: $line" >&2
      exit 2
    fi
    optional=${BASH_REMATCH[1]}
    key=${BASH_REMATCH[2]}
    value=$(printf '%s' "${BASH_REMATCH[3]}" | tr -s '[:space:]' ' ')
    KEYS+=("${key//\//.}")
    VALUES+=("$value")
    OPTIONAL+=("$([ -n "$optional" ] && echo 1 || echo 0)")
    AT_LEAST+=("$at_least")
    at_least=0
  done <"$file"
}

DRY_RUN=0

# Sets the keys of arrays KEYS/VALUES, after saving the old values of those
# it changes to $1; on a failed required key, puts back what it changed and
# returns 1.
apply_parsed() {
  local save=$1 i key want have
  local -a change_keys=() change_old=() change_new=() change_optional=()
  for i in "${!KEYS[@]}"; do
    key=${KEYS[$i]}
    want=${VALUES[$i]}
    if ! have=$(read_value "$key"); then
      if [ "${OPTIONAL[$i]}" = 1 ]; then
        echo "skip $key: not present here (optional)"
        continue
      fi
      echo "apply.sh: $key is not present in $PROC_SYS; nothing was changed" >&2
      return 1
    fi
    if [ "$have" = "$want" ]; then
      echo "keep $key = $have (already set)"
    elif [ "${AT_LEAST[$i]}" = 1 ] && reaches "$have" "$want"; then
      echo "keep $key = $have (at least $want)"
    else
      change_keys+=("$key")
      change_old+=("$have")
      change_new+=("$want")
      change_optional+=("${OPTIONAL[$i]}")
    fi
  done

  if [ "$DRY_RUN" = 1 ]; then
    for i in "${!change_keys[@]}"; do
      echo "would set ${change_keys[$i]} = ${change_new[$i]} (was ${change_old[$i]})"
    done
    echo "would save the previous values to $save"
    return 0
  fi

  # The save file comes first: nothing changes unless it was written.
  {
    echo "# c10m sysctl values before $(basename "$PROFILE") was applied on $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "# put them back with: sysctl/apply.sh --restore $save"
    for i in "${!change_keys[@]}"; do
      echo "${change_keys[$i]} = ${change_old[$i]}"
    done
  } >"$save" || { echo "apply.sh: cannot write $save; nothing was changed" >&2; return 1; }
  echo "saved previous values to $save"

  for i in "${!change_keys[@]}"; do
    key=${change_keys[$i]}
    if write_value "$key" "${change_new[$i]}"; then
      echo "set $key = ${change_new[$i]} (was ${change_old[$i]})"
      continue
    fi
    if [ "${change_optional[$i]}" = 1 ]; then
      echo "skip $key: cannot be written here (optional)"
      continue
    fi
    echo "apply.sh: cannot write $key = ${change_new[$i]} ($(key_path "$key") is read-only here, or the value was refused); putting back what was changed" >&2
    local k
    for ((k = i - 1; k >= 0; k--)); do
      write_value "${change_keys[$k]}" "${change_old[$k]}" && echo "put back ${change_keys[$k]} = ${change_old[$k]}"
    done
    return 1
  done
  return 0
}

restore_file() {
  local file=$1 i status=0
  parse_file "$file"
  for i in "${!KEYS[@]}"; do
    if [ "$(read_value "${KEYS[$i]}")" = "${VALUES[$i]}" ]; then
      echo "keep ${KEYS[$i]} = ${VALUES[$i]} (already)"
    elif [ "$DRY_RUN" = 1 ]; then
      echo "would put back ${KEYS[$i]} = ${VALUES[$i]} (now $(read_value "${KEYS[$i]}" || echo 'not present'))"
    elif write_value "${KEYS[$i]}" "${VALUES[$i]}"; then
      echo "put back ${KEYS[$i]} = ${VALUES[$i]}"
    else
      echo "apply.sh: cannot put back ${KEYS[$i]} = ${VALUES[$i]}" >&2
      status=1
    fi
  done
  return $status
}

MODE=apply
SAVE=""
PROFILE=""
RESTORE=""
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) usage ;;
    --dry-run) DRY_RUN=1 ;;
    --save)
      [ $# -ge 2 ] || die_usage "--save needs a file"
      SAVE=$2
      shift
      ;;
    --restore)
      [ $# -ge 2 ] || die_usage "--restore needs the file an earlier apply saved"
      MODE=restore
      RESTORE=$2
      shift
      ;;
    --scoped)
      [ $# -ge 2 ] || die_usage "--scoped needs a profile"
      MODE=scoped
      PROFILE=$2
      shift
      ;;
    --)
      shift
      break
      ;;
    -*) die_usage "unknown option $1" ;;
    *)
      [ -z "$PROFILE" ] || die_usage "one profile at a time (got $PROFILE and $1)"
      PROFILE=$1
      ;;
  esac
  shift
done

case $MODE in
  restore)
    [ -z "$PROFILE" ] || die_usage "--restore takes no profile"
    [ -r "$RESTORE" ] || die_usage "cannot read $RESTORE"
    restore_file "$RESTORE"
    exit $?
    ;;
  apply)
    [ $# -eq 0 ] || die_usage "a command to run needs --scoped"
    [ -n "$PROFILE" ] || die_usage "which profile? (e.g. sysctl/c10m-10m.conf)"
    [ -r "$PROFILE" ] || die_usage "cannot read $PROFILE"
    [ -n "$SAVE" ] || SAVE="${TMPDIR:-/var/tmp}/c10m-sysctl-saved-$(date -u +%Y%m%dT%H%M%SZ)-$$.conf"
    parse_file "$PROFILE"
    apply_parsed "$SAVE"
    exit $?
    ;;
  scoped)
    [ $# -gt 0 ] || die_usage "--scoped PROFILE -- COMMAND: which command?"
    [ "$DRY_RUN" = 0 ] || die_usage "--dry-run and --scoped do not mix"
    [ -r "$PROFILE" ] || die_usage "cannot read $PROFILE"
    temporary_save=0
    if [ -z "$SAVE" ]; then
      SAVE=$(mktemp "${TMPDIR:-/var/tmp}/c10m-sysctl-saved-XXXXXX.conf") || exit 1
      temporary_save=1
    fi
    parse_file "$PROFILE"
    apply_parsed "$SAVE" || exit 1
    restored=0
    put_back() {
      [ "$restored" = 1 ] && return
      restored=1
      if restore_file "$SAVE"; then
        [ "$temporary_save" = 0 ] || rm -f "$SAVE"
      else
        echo "apply.sh: some values were not put back; they are in $SAVE" >&2
      fi
    }
    trap 'put_back; exit 130' INT
    trap 'put_back; exit 143' TERM
    trap put_back EXIT
    "$@"
    status=$?
    put_back
    exit $status
    ;;
esac

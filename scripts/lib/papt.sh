# papt SUITE APT-GET-ARGS... / pcache SUITE APT-CACHE-ARGS...: apt-get / apt-cache against one extra Debian
# suite with a private configuration under $VMKIT/apt/SUITE. The host's /etc/apt is never touched: a
# trixie/sid line there would let newer libc6 in.
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
MIRROR=${MIRROR:-$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)}
[ -n "$MIRROR" ] || MIRROR=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
_papt_opts() { local suite=$1 d=$VMKIT/apt/$1
  mkdir -p "$d"/lists/partial "$d"/cache/archives/partial "$d"/parts "$d"/prefs; touch "$d/status"
  printf 'deb [signed-by=%s] %s %s main\ndeb-src [signed-by=%s] %s %s main\n' \
         "$KEYRING" "$MIRROR" "$suite" "$KEYRING" "$MIRROR" "$suite" > "$d/sources.list"
  PAPT_OPTS=(-o Dir::Etc::SourceList="$d/sources.list" -o Dir::Etc::SourceParts="$d/parts"
             -o Dir::Etc::PreferencesParts="$d/prefs" -o Dir::State::Lists="$d/lists"
             -o Dir::Cache="$d/cache" -o Dir::State::Status="$d/status" -o APT::Sandbox::User=root
             -o Acquire::Check-Valid-Until=false)
  ls "$d"/lists/*InRelease >/dev/null 2>&1 || apt-get -q "${PAPT_OPTS[@]}" update >&2; }
papt() { local suite=$1; shift; _papt_opts "$suite"; apt-get -q "${PAPT_OPTS[@]}" "$@"; }
pcache() { local suite=$1; shift; _papt_opts "$suite"; apt-cache "${PAPT_OPTS[@]}" "$@"; }

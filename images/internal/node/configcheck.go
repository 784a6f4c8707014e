package node

import (
	"encoding"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel/logx"
	"github.com/ouronet/ouro/layer/shim/impair"
)

// Strict configuration checking: every key known, every value of the
// right type and in its accepted set, every required key present, each
// mistake reported with its line and a hint. It runs in ParseConfig, so a
// node refuses a wrong configuration before any component starts, and
// "router -check-config" (make image) runs it on the host.

// ConfigError is one mistake in a configuration.
type ConfigError struct {
	File  string // the file, when the configuration came from one
	Line  int    // 1-based; 0 when unknown
	Table string // where the key is: "[node]", "[ipcp.udp] of [[ipcp]] #1", ...
	Key   string // the key as written in its table ("" for the table itself)
	Msg   string // what is wrong, with the accepted keys or values
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		fmt.Fprintf(&b, "%s: ", e.File)
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Table != "" {
		b.WriteString(e.Table + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap makes every configuration error a flow.ErrInvalid.
func (e *ConfigError) Unwrap() error { return flow.ErrInvalid }

// ConfigErrors is every mistake found in one configuration, in the order
// of their lines.
type ConfigErrors []*ConfigError

func (es ConfigErrors) Error() string {
	if len(es) == 1 {
		return es[0].Error()
	}
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return fmt.Sprintf("%d mistakes in the configuration:\n\t%s", len(es), strings.Join(msgs, "\n\t"))
}

// Unwrap returns the mistakes.
func (es ConfigErrors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// inFile names file in every mistake of err (a ConfigErrors); other
// errors are prefixed with the file name.
func inFile(err error, file string) error {
	var es ConfigErrors
	if errors.As(err, &es) {
		for _, e := range es {
			e.File = file
		}
		return es
	}
	return fmt.Errorf("%s: %w", file, err)
}

// ipcpKinds are the accepted values of [[ipcp]] kind, and the type of
// each kind's [ipcp.<kind>] table.
func ipcpKinds() map[string]reflect.Type {
	return map[string]reflect.Type{
		"udp":       reflect.TypeFor[udpConfig](),
		"eth":       reflect.TypeFor[ethConfig](),
		"local":     reflect.TypeFor[struct{}](),
		"serial":    reflect.TypeFor[serialConfig](),
		"unicast":   reflect.TypeFor[unicastConfig](),
		"broadcast": reflect.TypeFor[broadcastConfig](),
		"diode":     reflect.TypeFor[diodeConfig](),
		"carrier":   reflect.TypeFor[carrierConfig](),
	}
}

// choice is a key's accepted values: listed ones (shown in hints) and
// aliases (accepted, not shown).
type choice struct {
	values  []string
	aliases []string
}

func (c choice) accepts(v string) bool {
	return slices.Contains(c.values, v) || slices.Contains(c.aliases, v)
}

// The accepted values of the keys that have a closed set. The parsers
// that use them (layer.ParseHashAlgo, pff.ParseKind, enroll.Config.Validate,
// dt's schedulers) are checked against these lists by TestChoicesMatchParsers.
var (
	hashChoice    = choice{values: []string{"sha3-256", "sha256"}, aliases: []string{"SHA3_256", "SHA256"}}
	routingChoice = choice{values: []string{"simple", "alternate", "multipath"}, aliases: []string{"lfa", "ecmp"}}
	caChoice      = choice{values: []string{"mb-ecn", "mb-ecn-local", "nop"}}
	dirChoice     = choice{values: []string{"dht", "flood"}}
	schedChoice   = choice{values: []string{"strict", "wrr"}}
	widthChoice   = choice{values: []string{"4", "8"}}
	appChoice     = choice{values: []string{"echo", "perf", "halt", "mgmt"}}
	boardChoice   = choice{values: []string{"true", "false", "enet", "usb"}}
	formatChoice  = choice{values: logx.Formats}
)

// choices returns the closed sets of each table type's keys.
func choices() map[reflect.Type]map[string]choice {
	kinds := ipcpKinds()
	var kc choice
	for k := range kinds {
		kc.values = append(kc.values, k)
	}
	sort.Strings(kc.values)
	return map[reflect.Type]map[string]choice{
		reflect.TypeFor[IPCPConfig]():   {"kind": kc},
		reflect.TypeFor[NodeConfig]():   {"log_format": formatChoice},
		reflect.TypeFor[AppConfig]():    {"kind": appChoice},
		reflect.TypeFor[udpConfig]():    {"hash": hashChoice},
		reflect.TypeFor[ethConfig]():    {"hash": hashChoice},
		reflect.TypeFor[serialConfig](): {"hash": hashChoice},
		reflect.TypeFor[unicastConfig](): {"hash": hashChoice, "routing": routingChoice, "ca": caChoice,
			"dir": dirChoice, "sched": schedChoice, "addr_width": widthChoice},
	}
}

// checker collects the mistakes of one document.
type checker struct {
	lines         keyLines
	choices       map[reflect.Type]map[string]choice
	errs          ConfigErrors
	suggestedKeys map[string]bool // table path + key: suggested for a misspelt key
	structural    bool            // the structure check found mistakes
}

func newChecker(doc string) *checker {
	return &checker{lines: scanKeyLines(doc), choices: choices(), suggestedKeys: map[string]bool{}}
}

func (k *checker) add(path []any, table, key, format string, args ...any) {
	k.errs = append(k.errs, &ConfigError{Line: k.lines.line(path), Table: table, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// sorted orders the mistakes by line (stable: the walk's order otherwise).
func (k *checker) sorted() ConfigErrors {
	sort.SliceStable(k.errs, func(i, j int) bool {
		li, lj := k.errs[i].Line, k.errs[j].Line
		return li != 0 && (lj == 0 || li < lj)
	})
	return k.errs
}

// syntaxError turns a TOML parse error into a ConfigError with its line.
func syntaxError(err error) ConfigErrors {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		msg := pe.Message
		if pe.Usage != "" {
			msg += " (" + strings.Join(strings.Fields(pe.Usage), " ") + ")"
		}
		return ConfigErrors{{Line: pe.Position.Line, Msg: "TOML syntax: " + msg}}
	}
	return ConfigErrors{{Msg: "TOML: " + err.Error()}}
}

// tomlFields maps each TOML key of struct type t to its field.
func tomlFields(t reflect.Type) map[string]reflect.StructField {
	m := map[string]reflect.StructField{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = f
	}
	return m
}

var (
	primitiveType = reflect.TypeFor[toml.Primitive]()
	durationType  = reflect.TypeFor[duration]()
	offDurType    = reflect.TypeFor[offDuration]()
	timeDurType   = reflect.TypeFor[time.Duration]()
	boardPortType = reflect.TypeFor[boardPort]()
	logLevelType  = reflect.TypeFor[LogLevel]()
)

// keysInLineOrder returns m's keys in the order they appear in the file.
func (k *checker) keysInLineOrder(path []any, m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for key := range m {
		keys = append(keys, key)
	}
	sort.Slice(keys, func(i, j int) bool {
		li, lj := k.lines.line(append(path, keys[i])), k.lines.line(append(path, keys[j]))
		if li != lj {
			return li < lj
		}
		return keys[i] < keys[j]
	})
	return keys
}

// structure checks the decoded document against Config: keys, types,
// accepted values, required keys and the kind-specific IPCP tables.
func (k *checker) structure(doc map[string]any) {
	top := tomlFields(reflect.TypeFor[Config]())
	for _, key := range k.keysInLineOrder(nil, doc) {
		v := doc[key]
		path := []any{key}
		switch key {
		case "ipcp", "app", "ipnet":
			elems, ok := tableArray(v)
			if !ok {
				k.add(path, "", key, "%s must be an array of tables: write each %s as [[%s]]", key, arrayWhat(key), key)
				continue
			}
			for i, e := range elems {
				p := []any{key, i}
				where := fmt.Sprintf("[[%s]] #%d", key, i+1)
				switch key {
				case "ipcp":
					k.ipcp(p, i, e)
				case "app":
					k.table(p, where, "app", e, reflect.TypeFor[AppConfig](), nil)
					if _, ok := e["kind"]; !ok && !k.suggested(p, "kind") {
						k.add(p, where, "kind", "missing required key \"kind\" (accepted values: %s)", strings.Join(appChoice.values, ", "))
					}
				case "ipnet":
					k.table(p, where, "ipnet", e, reflect.TypeFor[IPNetConfig](), nil)
				}
			}
		default:
			f, ok := top[key]
			if !ok {
				k.unknown(path, "", "", key, v, top, nil)
				continue
			}
			k.value(path, "["+key+"]", key, key, v, f.Type)
		}
	}
}

// arrayWhat names what one table of an array of tables declares.
func arrayWhat(key string) string {
	switch key {
	case "ipcp":
		return "IPC process"
	case "app":
		return "application"
	}
	return "bridge"
}

// tableArray returns v as an array of tables.
func tableArray(v any) ([]map[string]any, bool) {
	switch v := v.(type) {
	case []map[string]any:
		return v, true
	case []any:
		out := make([]map[string]any, 0, len(v))
		for _, e := range v {
			m, ok := e.(map[string]any)
			if !ok {
				return nil, false
			}
			out = append(out, m)
		}
		return out, true
	}
	return nil, false
}

// ipcp checks [[ipcp]] number i and its kind-specific table.
func (k *checker) ipcp(path []any, i int, e map[string]any) {
	where := fmt.Sprintf("[[ipcp]] #%d", i+1)
	if n, ok := e["name"].(string); ok && n != "" {
		where += fmt.Sprintf(" %q", n)
	}
	kinds := ipcpKinds()
	kind, _ := e["kind"].(string)
	fields := tomlFields(reflect.TypeFor[IPCPConfig]())
	rest := map[string]any{}
	for _, key := range k.keysInLineOrder(path, e) {
		v := e[key]
		f, isField := fields[key]
		if isField && f.Type == primitiveType {
			if kt := kinds[key]; kt != nil {
				sub := append(slices.Clone(path), key)
				tm, ok := v.(map[string]any)
				switch {
				case !ok:
					k.add(sub, where, key, "%s must be a table: [ipcp.%s]", key, key)
				case kind != "" && key != kind && kinds[kind] != nil:
					k.add(sub, where, key, "table [ipcp.%s] does not apply to kind %q; its table is [ipcp.%s]", key, kind, kind)
				default:
					k.table(sub, fmt.Sprintf("[ipcp.%s] of %s", key, where), "ipcp."+key, tm, kt, nil)
				}
				continue
			}
		}
		rest[key] = v
	}
	// Suggestions for unknown keys include the kind's table (every kind's
	// while the kind is not known).
	extra := map[string]string{}
	for kk, kt := range kinds {
		if (kinds[kind] == nil || kk == kind) && kt.NumField() > 0 {
			extra[kk] = "[ipcp." + kk + "]"
		}
	}
	k.table(path, where, "ipcp", rest, reflect.TypeFor[IPCPConfig](), extra)
	if _, ok := e["kind"]; !ok && !k.suggested(path, "kind") {
		k.add(path, where, "kind", "missing required key \"kind\" (accepted values: %s)", strings.Join(k.choices[reflect.TypeFor[IPCPConfig]()]["kind"].values, ", "))
	}
}

// suggested reports whether a mistake already suggested key in the table
// at path (a misspelt "kidn" is not also a missing "kind").
func (k *checker) suggested(path []any, key string) bool {
	return k.suggestedKeys[pathKey(path)+pathSep+key]
}

// table checks the keys of one table, m, against struct type t; extra are
// further accepted keys (handled by the caller) to list and suggest,
// mapped to how they are written.
func (k *checker) table(path []any, where, tname string, m map[string]any, t reflect.Type, extra map[string]string) {
	fields := tomlFields(t)
	for _, key := range k.keysInLineOrder(path, m) {
		v := m[key]
		p := append(slices.Clone(path), key)
		f, ok := fields[key]
		if !ok || f.Type == primitiveType {
			k.unknown(p, where, tname, key, v, fields, extra)
			continue
		}
		k.value(p, where, joinKey(tname, key), key, v, f.Type)
		if c, ok := k.choices[t][key]; ok {
			k.choice(p, where, key, v, c)
		}
	}
}

// unknown reports key, absent from fields, with a suggestion.
func (k *checker) unknown(path []any, where, tname, key string, v any, fields map[string]reflect.StructField, extra map[string]string) {
	var names []string
	display := map[string]string{}
	for name, f := range fields {
		if f.Type == primitiveType {
			continue
		}
		names = append(names, name)
		display[name] = keyDisplay(tname, name, f.Type)
	}
	for name, d := range extra {
		names = append(names, name)
		display[name] = d
		if d == "" {
			display[name] = name
		}
	}
	sort.Slice(names, func(i, j int) bool { // plain keys first, then tables
		ti, tj := strings.HasPrefix(display[names[i]], "["), strings.HasPrefix(display[names[j]], "[")
		if ti != tj {
			return tj
		}
		return names[i] < names[j]
	})
	shown := make([]string, len(names))
	for i, n := range names {
		shown[i] = display[n]
	}
	msg := fmt.Sprintf("unknown key %q", key)
	if _, isTable := v.(map[string]any); isTable {
		msg = "unknown table [" + joinKey(tname, key) + "]"
	} else if arr, isArray := tableArray(v); isArray && len(arr) > 0 {
		msg = "unknown table [[" + joinKey(tname, key) + "]]"
	}
	if s := suggest(key, names); s != "" {
		if display[s] == s {
			msg += fmt.Sprintf("; did you mean %q?", s)
		} else {
			msg += "; did you mean " + display[s] + "?"
		}
		k.suggestedKeys[pathKey(path[:len(path)-1])+pathSep+s] = true
	}
	if len(shown) == 0 {
		msg += " (this table takes no keys)"
	} else {
		msg += " (accepted: " + strings.Join(shown, ", ") + ")"
	}
	k.add(path, where, key, "%s", msg)
}

func joinKey(table, key string) string {
	if table == "" {
		return key
	}
	return table + "." + key
}

// keyDisplay is how key of a table is written: a plain key, [table.key]
// or [[table.key]].
func keyDisplay(table, key string, t reflect.Type) string {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t.Kind() == reflect.Struct && t != durationType && t != offDurType && !implementsUnmarshal(t):
		return "[" + joinKey(table, key) + "]"
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		return "[[" + joinKey(table, key) + "]]"
	}
	return key
}

func implementsUnmarshal(t reflect.Type) bool {
	pt := reflect.PointerTo(t)
	return pt.Implements(reflect.TypeFor[toml.Unmarshaler]()) || pt.Implements(reflect.TypeFor[encoding.TextUnmarshaler]())
}

// value checks v, the value of key (tpath: its dotted path for nested
// tables), against Go type t.
func (k *checker) value(path []any, where, tpath, key string, v any, t reflect.Type) {
	bad := func(want string) {
		k.add(path, where, key, "%s = %s: want %s", key, tomlValue(v), want)
	}
	switch t {
	case durationType, offDurType:
		s, ok := v.(string)
		if !ok {
			bad("a duration in quotes, like \"250ms\" or \"10s\"")
			return
		}
		d, err := time.ParseDuration(s)
		switch {
		case err != nil:
			bad("a duration like \"250ms\" or \"10s\"")
		case d < 0 && t == durationType:
			bad("a duration like \"250ms\" or \"10s\" (not negative)")
		}
		return
	case timeDurType:
		switch x := v.(type) {
		case string:
			if d, err := time.ParseDuration(x); err != nil || d < 0 {
				bad("a duration like \"2ms\"")
			}
		case int64:
			if x < 0 {
				bad("a duration like \"2ms\"")
			}
		default:
			bad("a duration like \"2ms\"")
		}
		return
	case logLevelType:
		switch x := v.(type) {
		case bool:
		case string:
			if _, err := logx.ParseLevel(x); err != nil {
				k.add(path, where, key, "%s = %q is not accepted%s (accepted values: %s, true, false)", key, x, didYouMean(x, logx.Levels), strings.Join(logx.Levels, ", "))
			}
		default:
			bad("a level (" + strings.Join(logx.Levels, ", ") + ") or true/false")
		}
		return
	case boardPortType:
		switch x := v.(type) {
		case bool:
		case string:
			if x != "enet" && x != "usb" {
				k.add(path, where, key, "%s = %q is not accepted%s (accepted values: true, false, \"enet\", \"usb\")", key, x, didYouMean(x, []string{"enet", "usb"}))
			}
		default:
			bad("true, false, \"enet\" or \"usb\"")
		}
		return
	}
	switch t.Kind() {
	case reflect.String:
		if _, ok := v.(string); !ok {
			bad("a string in quotes")
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			bad("true or false")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		x, ok := v.(int64)
		if !ok {
			bad("an integer")
		} else if reflect.Zero(t).OverflowInt(x) {
			bad(fmt.Sprintf("an integer that fits in %d bits", t.Bits()))
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		x, ok := v.(int64)
		switch {
		case !ok:
			bad("an integer")
		case x < 0:
			bad("an integer of at least 0")
		case reflect.Zero(t).OverflowUint(uint64(x)):
			bad(fmt.Sprintf("an integer below %d", uint64(1)<<t.Bits()))
		}
	case reflect.Float32, reflect.Float64:
		switch v.(type) {
		case float64, int64:
		default:
			bad("a number")
		}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Struct {
			elems, ok := tableArray(v)
			if !ok {
				bad("an array of tables, [[" + tpath + "]]")
				return
			}
			for i, e := range elems {
				k.table(append(slices.Clone(path), i), fmt.Sprintf("[[%s]] #%d", tpath, i+1), tpath, e, t.Elem(), nil)
			}
			return
		}
		arr, ok := v.([]any)
		if !ok {
			if t.Elem().Kind() == reflect.String {
				bad("an array of strings, like [\"a\", \"b\"]")
			} else {
				bad("an array")
			}
			return
		}
		for i, e := range arr {
			k.value(append(slices.Clone(path), i), where, tpath, fmt.Sprintf("%s[%d]", key, i), e, t.Elem())
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			bad("a table, like { name = \"value\" }")
			return
		}
		for _, name := range k.keysInLineOrder(path, m) {
			k.value(append(slices.Clone(path), name), where, tpath, key+"."+strconv.Quote(name), m[name], t.Elem())
		}
	case reflect.Pointer:
		k.value(path, where, tpath, key, v, t.Elem())
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			bad("a table, [" + tpath + "]")
			return
		}
		sub := "[" + tpath + "]"
		if i := strings.Index(where, " of "); i >= 0 {
			sub += where[i:]
		} else if strings.HasPrefix(where, "[[") {
			sub += " of " + where
		}
		k.table(path, sub, tpath, m, t, nil)
	}
}

// choice checks v against a closed set.
func (k *checker) choice(path []any, where, key string, v any, c choice) {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case int64:
		s = strconv.FormatInt(x, 10)
		if x == 0 && key == "addr_width" {
			return // the default
		}
	default:
		return // a type mistake, reported by value
	}
	if c.accepts(s) {
		return
	}
	hint := ""
	if _, isString := v.(string); isString {
		hint = didYouMean(s, c.values)
	}
	k.add(path, where, key, "%s = %s is not accepted%s (accepted values: %s)", key, tomlValue(v), hint, strings.Join(c.values, ", "))
}

func didYouMean(s string, candidates []string) string {
	if m := suggest(s, candidates); m != "" {
		return fmt.Sprintf("; did you mean %q?", m)
	}
	return ""
}

// tomlValue writes v as it would appear in TOML.
func tomlValue(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case map[string]any:
		return "{...}"
	case []any, []map[string]any:
		return "[...]"
	}
	return fmt.Sprint(v)
}

// suggest returns the candidate closest to s, if it is close enough to be
// a slip (an edit or two, a swapped pair, a different case), else "".
func suggest(s string, candidates []string) string {
	best, bestD := "", 1<<30
	for _, c := range candidates {
		d := editDistance(strings.ToLower(s), strings.ToLower(c))
		if d < bestD || d == bestD && c < best {
			best, bestD = c, d
		}
	}
	limit := 1
	switch {
	case len(s) >= 8:
		limit = 3
	case len(s) >= 4:
		limit = 2
	}
	if best != "" && bestD <= limit {
		return best
	}
	for _, c := range candidates { // a prefix: "mb" for "mb-ecn"
		if len(s) >= 2 && strings.HasPrefix(c, s) {
			return c
		}
	}
	return ""
}

// editDistance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and transpositions of adjacent
// bytes each count 1.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// values checks what the types cannot say, once the document decoded:
// names, ranges, addresses, exclusive keys. It fills the defaults that
// other checks need (IPCP and node names). standalone is false for an
// IPCP created at run time, whose lower layers live outside the document.
func (k *checker) values(c *Config, standalone bool) {
	if c.Node.Name != "" && !validName(c.Node.Name) {
		k.add([]any{"node", "name"}, "[node]", "name", "name = %q: letters, digits, '.', '_' and '-' only, at most 64", c.Node.Name)
	}
	if c.Node.Metrics != "" {
		if err := checkMetricsAddr(c.Node.Metrics, c.Node.MetricsPublic); err != nil {
			k.add([]any{"node", "metrics"}, "[node]", "metrics", "metrics = %q: %v", c.Node.Metrics, err)
		}
	}
	if c.Node.Procs < 0 {
		k.add([]any{"node", "procs"}, "[node]", "procs", "procs = %d: 0 (adapt to the load) or how many processors", c.Node.Procs)
	}
	if c.IRM.RingSize < 0 || c.IRM.Backlog < 0 {
		k.add([]any{"irm"}, "[irm]", "", "ring_size and backlog must not be negative")
	}
	layers := map[string]bool{}
	for _, p := range c.IPCPs {
		if p.Layer != "" {
			layers[p.Layer] = true
		}
	}
	seen := map[string]int{}
	for i := range c.IPCPs {
		p := &c.IPCPs[i]
		path := []any{"ipcp", i}
		where := fmt.Sprintf("[[ipcp]] #%d", i+1)
		if p.Name != "" {
			where += fmt.Sprintf(" %q", p.Name)
		}
		if p.Name != "" && !validName(p.Name) {
			k.add(append(path, "name"), where, "name", "name = %q: letters, digits, '.', '_' and '-' only, at most 64", p.Name)
		}
		if p.Layer != "" && !validName(p.Layer) {
			k.add(append(path, "layer"), where, "layer", "layer = %q: letters, digits, '.', '_' and '-' only, at most 64", p.Layer)
		}
		if p.Bufs != 0 && p.Bufs < 64 {
			k.add(append(path, "bufs"), where, "bufs", "bufs = %d is below the minimum of 64", p.Bufs)
		}
		name := p.Name
		if name == "" {
			name = c.Node.Name + "." + p.Kind
		}
		if j, dup := seen[name]; dup {
			k.add(path, where, "name", "IPCP name %q is already used by [[ipcp]] #%d (give each a name)", name, j+1)
		}
		seen[name] = i
		tpath := append(slices.Clone(path), p.Kind)
		twhere := fmt.Sprintf("[ipcp.%s] of %s", p.Kind, where)
		switch p.Kind {
		case "udp":
			var u udpConfig
			if k.decode(c, p.UDP, &u, tpath, twhere) {
				k.checkUDP(u, tpath, twhere)
			}
		case "eth":
			var e ethConfig
			if k.decode(c, p.Eth, &e, tpath, twhere) {
				k.checkEth(e, tpath, twhere)
			}
		case "serial":
			var s serialConfig
			if k.decode(c, p.Serial, &s, tpath, twhere) {
				k.checkSerial(s, tpath, twhere)
			}
		case "unicast":
			var u unicastConfig
			if k.decode(c, p.Unicast, &u, tpath, twhere) {
				k.checkUnicast(u, *p, tpath, twhere, layers, standalone)
			}
		case "broadcast":
			var b broadcastConfig
			if k.decode(c, p.Broadcast, &b, tpath, twhere) {
				k.checkLower(b.Lower, tpath, twhere, layers, standalone)
			}
		case "diode": // intermittent.go
			var d diodeConfig
			if k.decode(c, p.Diode, &d, tpath, twhere) {
				k.checkDiode(d, *p, tpath, twhere)
			}
		case "carrier": // intermittent.go
			var cc carrierConfig
			if k.decode(c, p.Carrier, &cc, tpath, twhere) {
				k.checkCarrier(cc, *p, tpath, twhere)
			}
		}
	}
	for i, b := range c.IPNets {
		if _, _, err := b.bridgeConfig(); err != nil {
			k.add([]any{"ipnet", i}, fmt.Sprintf("[[ipnet]] #%d", i+1), "", "%v", err)
		}
	}
	apps := map[string]int{}
	for i, a := range c.Apps {
		path := []any{"app", i}
		where := fmt.Sprintf("[[app]] #%d", i+1)
		name := a.Name
		if name == "" {
			name = a.Kind
		}
		if !validName(name) {
			k.add(append(path, "name"), where, "name", "name = %q: letters, digits, '.', '_' and '-' only, at most 64", name)
		}
		if j, dup := apps[name]; dup {
			k.add(path, where, "name", "app name %q is already used by [[app]] #%d", name, j+1)
		}
		apps[name] = i
		if a.Bufs != 0 && a.Bufs < 64 {
			k.add(append(path, "bufs"), where, "bufs", "bufs = %d is below the minimum of 64", a.Bufs)
		}
	}
}

// decode decodes an IPCP's kind-specific table; a failure (which the
// structure check should have caught) is reported at the table.
func (k *checker) decode(c *Config, prim toml.Primitive, v any, path []any, where string) bool {
	if err := c.md.PrimitiveDecode(prim, v); err != nil {
		if !k.structural { // else the structure check said why
			k.add(path, where, "", "%v", err)
		}
		return false
	}
	return true
}

func (k *checker) checkUDP(u udpConfig, path []any, where string) {
	at := func(key string) []any { return append(slices.Clone(path), key) }
	if u.Addr != "" {
		if _, err := netip.ParseAddrPort(u.Addr); err != nil {
			k.add(at("addr"), where, "addr", "addr = %q: want host:port with an IP address, like \"127.0.0.1:3435\" or \"[::]:3435\"", u.Addr)
		}
	}
	names := make([]string, 0, len(u.Dir))
	for n := range u.Dir {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, err := netip.ParseAddrPort(u.Dir[n]); err != nil {
			k.add(append(at("dir"), n), where, "dir", "dir entry %q = %q: want host:port with an IP address, like \"127.0.0.1:3436\"", n, u.Dir[n])
		}
	}
	k.checkImpair(u.Impair, at("impair"), where)
	if u.MaxSDU != 0 && (u.MaxSDU < flow.MinSDU || u.MaxSDU > flow.MaxJumboSDU) {
		k.add(at("max_sdu"), where, "max_sdu", "max_sdu = %d: want %d to %d (0: %d)", u.MaxSDU, flow.MinSDU, flow.MaxJumboSDU, flow.MaxSDU)
	}
	if ns := u.Netstack; ns != nil {
		np := at("netstack")
		nat := func(key string) []any { return append(slices.Clone(np), key) }
		nwhere := "[ipcp.udp.netstack] of " + strings.TrimPrefix(where, "[ipcp.udp] of ")
		if len(ns.Addrs) == 0 {
			k.add(np, nwhere, "addrs", "missing required key \"addrs\" (the stack's addresses with prefix, like [\"127.0.10.2/24\"])")
		}
		for i, a := range ns.Addrs {
			if _, err := netip.ParsePrefix(a); err != nil {
				k.add(append(nat("addrs"), i), nwhere, "addrs", "addrs[%d] = %q: want an address with prefix length, like \"127.0.10.2/24\"", i, a)
			}
		}
		for _, g := range []struct{ key, v string }{{"gateway4", ns.Gateway4}, {"gateway6", ns.Gateway6}} {
			if g.v == "" {
				continue
			}
			if _, err := netip.ParseAddr(g.v); err != nil {
				k.add(nat(g.key), nwhere, g.key, "%s = %q: want an IP address", g.key, g.v)
			}
		}
		k.exactlyOne(np, nwhere, map[string]bool{"board": ns.Board != "", "qemu_connect": ns.QEMUConnect != "", "qemu_listen": ns.QEMUListen != ""})
		k.checkMAC(ns.MAC, nat("mac"), nwhere)
	}
}

func (k *checker) checkImpair(c impair.Config, path []any, where string) {
	if err := c.Validate(); err != nil {
		k.add(path, "[impair] of "+where, "", "%s", strings.TrimPrefix(strings.TrimSuffix(err.Error(), ": "+flow.ErrInvalid.Error()), "impair: "))
	}
}

func (k *checker) checkMAC(mac string, path []any, where string) {
	if mac == "" {
		return
	}
	if _, err := net.ParseMAC(mac); err != nil {
		k.add(path, where, "mac", "mac = %q: want a MAC address like \"02:00:00:00:00:01\"", mac)
	}
}

// exactlyOne reports unless exactly one of the keys in set is set.
func (k *checker) exactlyOne(path []any, where string, set map[string]bool) {
	var keys, on []string
	for key, v := range set {
		keys = append(keys, key)
		if v {
			on = append(on, key)
		}
	}
	sort.Strings(keys)
	sort.Strings(on)
	switch len(on) {
	case 1:
		return
	case 0:
		table := where
		if i := strings.Index(where, " of "); i >= 0 {
			table = where[:i]
		}
		k.add(path, where, "", "missing the device: %s needs one of %s", table, strings.Join(keys, ", "))
	default: // reported at the last one written
		last := on[0]
		for _, key := range on {
			if k.lines.line(append(slices.Clone(path), key)) > k.lines.line(append(slices.Clone(path), last)) {
				last = key
			}
		}
		k.add(append(slices.Clone(path), last), where, last, "%s are exclusive: set only one of %s", strings.Join(on, " and "), strings.Join(keys, ", "))
	}
}

func (k *checker) checkEth(e ethConfig, path []any, where string) {
	k.exactlyOne(path, where, map[string]bool{
		"interface": e.Interface != "", "qemu_connect": e.QEMUConnect != "", "qemu_listen": e.QEMUListen != "", "board": e.Board != "",
	})
	k.checkMAC(e.MAC, append(slices.Clone(path), "mac"), where)
	k.checkImpair(e.Impair, append(slices.Clone(path), "impair"), where)
}

func (k *checker) checkSerial(s serialConfig, path []any, where string) {
	k.exactlyOne(path, where, map[string]bool{
		"device": s.Device != "", "tcp_connect": s.TCPConnect != "", "tcp_listen": s.TCPListen != "", "board": s.Board,
	})
	if s.Baud < 0 || s.Window < 0 {
		k.add(path, where, "", "baud and window must not be negative")
	}
}

func (k *checker) checkUnicast(u unicastConfig, p IPCPConfig, path []any, where string, layers map[string]bool, standalone bool) {
	at := func(key string) []any { return append(slices.Clone(path), key) }
	before := len(k.errs)
	if u.Bootstrap && u.Enroll != "" {
		k.add(at("enroll"), where, "enroll", "bootstrap and enroll are exclusive: the layer's first member bootstraps it, the others enroll through a member")
	}
	if u.Hello > 60_000 {
		k.add(at("hello"), where, "hello", "hello = %d: want a period in ms from 1 to 60000 (0: the default, 100)", u.Hello)
	}
	if u.Dead != 0 && (u.Dead < 2 || u.Dead > 100) {
		k.add(at("dead"), where, "dead", "dead = %d: want 2 to 100 hello periods (0: the default, 3)", u.Dead)
	}
	if u.QueueLen < 0 {
		k.add(at("queue_len"), where, "queue_len", "queue_len = %d must not be negative", u.QueueLen)
	}
	k.checkLower(u.Lower, path, where, layers, standalone)
	if len(k.errs) > before || k.structural {
		return
	}
	if _, err := u.config(p); err != nil { // what the IPCP itself will check
		k.add(path, where, "", "%v", err)
	}
}

// checkLower reports lower layers that no IPCP of the document is in.
func (k *checker) checkLower(lower []string, path []any, where string, layers map[string]bool, standalone bool) {
	if !standalone {
		return
	}
	var known []string
	for l := range layers {
		known = append(known, l)
	}
	sort.Strings(known)
	for i, l := range lower {
		if !layers[l] {
			k.add(append(slices.Clone(path), "lower", i), where, "lower", "lower layer %q is not a layer of this node%s (layers: %s)", l, didYouMean(l, known), strings.Join(known, ", "))
		}
	}
}

// checkMetricsAddr checks [node] metrics: a host:port to listen on, whose
// host is a loopback address (or "localhost") unless public allows any.
func checkMetricsAddr(addr string, public bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port, e.g. \"127.0.0.1:9464\"")
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port %q: want 0 (any free port) to 65535", port)
	}
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if host != "" && err != nil {
		return fmt.Errorf("host %q: want an IP address or localhost", host)
	}
	if host != "" && ip.IsLoopback() || public {
		return nil
	}
	return fmt.Errorf("not a loopback address: the metrics are served to whoever connects; set metrics_public = true to serve them there")
}

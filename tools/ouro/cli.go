package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// usageError is a mistake on the command line: exit code 2 and the
// command's usage.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// errHelp is returned when -h or --help asked for the usage: exit 0.
var errHelp = flag.ErrHelp

// flagSet is a command's flags: the global ones (--socket, --json) and its
// own, with short and long spellings of one flag sharing a variable.
type flagSet struct {
	*flag.FlagSet
	cmd   *command
	order map[string]int // flag name → definition order, for the help
}

// newFlags returns the flag set for cmd, with the global flags wired to a.
func (a *app) newFlags(cmd *command) *flagSet {
	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&a.socket, "socket", a.socket, "the node's Unix socket at `PATH` (default $OURO_SOCKET, else where a node listens: see \"ouro help\")")
	fs.BoolVar(&a.json, "json", a.json, "machine-readable output (JSON)")
	fs.StringVar(&a.via, "via", a.via, "management commands go to the remote node serving `NAME` (its \"mgmt\" app), over a sealed flow from the local node")
	f := &flagSet{FlagSet: fs, cmd: cmd, order: map[string]int{}}
	if a.captureFlags != nil {
		a.captureFlags(f)
	}
	return f
}

// parse parses args, flags anywhere among the positional arguments
// ("--" ends the flags), and checks the number of positional arguments.
func (fs *flagSet) parse(args []string, minArgs, maxArgs int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errHelp
			}
			return nil, usagef("%s: %v", fs.cmd.name, err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if len(pos) < minArgs || (maxArgs >= 0 && len(pos) > maxArgs) {
		return nil, usagef("%s: wrong number of arguments", fs.cmd.name)
	}
	return pos, nil
}

// printFlags writes the flag list, one line per variable with all its
// spellings ("-c, --count N"), the global flags last.
func printFlags(w io.Writer, fs *flagSet) {
	type entry struct {
		names []string
		f     *flag.Flag
	}
	var order []*entry
	byValue := map[flag.Value]*entry{}
	fs.VisitAll(func(f *flag.Flag) {
		key := f.Value
		if !reflect.TypeOf(key).Comparable() {
			key = nil
		}
		if e := byValue[key]; key != nil && e != nil {
			e.names = append(e.names, f.Name)
			if e.f.Usage == "" {
				e.f = f
			}
			return
		}
		e := &entry{names: []string{f.Name}, f: f}
		order = append(order, e)
		if key != nil {
			byValue[key] = e
		}
	})
	rank := func(e *entry) int {
		if i, ok := fs.order[e.f.Name]; ok {
			return i
		}
		return len(fs.order) // the global flags, last
	}
	sort.SliceStable(order, func(i, j int) bool { return rank(order[i]) < rank(order[j]) })
	for _, e := range order {
		sort.Slice(e.names, func(i, j int) bool { return len(e.names[i]) < len(e.names[j]) })
		var spell []string
		for _, n := range e.names {
			if len(n) == 1 {
				spell = append(spell, "-"+n)
			} else {
				spell = append(spell, "--"+n)
			}
		}
		arg, usage := flag.UnquoteUsage(e.f)
		if isBool(e.f) {
			arg = ""
		} else if arg == "" || arg == "value" {
			arg = "X"
		}
		left := strings.Join(spell, ", ")
		if arg != "" {
			left += " " + strings.ToUpper(arg)
		}
		def := ""
		if !isBool(e.f) && e.f.DefValue != "" && e.f.DefValue != "0" && e.f.DefValue != "0s" && e.f.Name != "socket" {
			def = " (default " + e.f.DefValue + ")"
		}
		fmt.Fprintf(w, "  %-24s %s%s\n", left, usage, def)
	}
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// seconds is a duration flag that also takes plain seconds ("0.2"), as
// ping(8) does.
type seconds struct{ d *time.Duration }

func (s seconds) String() string {
	if s.d == nil {
		return ""
	}
	return s.d.String()
}

func (s seconds) Set(v string) error {
	if d, err := time.ParseDuration(v); err == nil {
		if d < 0 {
			return fmt.Errorf("negative duration %s", v)
		}
		*s.d = d
		return nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 {
		return fmt.Errorf("%q is not a duration (like 200ms, 1.5s or 0.2)", v)
	}
	*s.d = time.Duration(f * float64(time.Second))
	return nil
}

// durationVar defines a seconds flag under every name given.
func (fs *flagSet) durationVar(p *time.Duration, def time.Duration, usage string, names ...string) {
	*p = def
	fs.define(names)
	for i, n := range names {
		u := usage
		if i > 0 {
			u = ""
		}
		fs.Var(seconds{p}, n, u)
	}
}

// define records the definition order of a flag's names.
func (fs *flagSet) define(names []string) {
	for _, n := range names {
		fs.order[n] = len(fs.order)
	}
}

// intVar, stringVar and boolVar define a flag under every name given.
func (fs *flagSet) intVar(p *int, def int, usage string, names ...string) {
	fs.define(names)
	for i, n := range names {
		fs.IntVar(p, n, def, map[bool]string{true: usage}[i == 0])
	}
}

func (fs *flagSet) stringVar(p *string, def, usage string, names ...string) {
	fs.define(names)
	for i, n := range names {
		fs.StringVar(p, n, def, map[bool]string{true: usage}[i == 0])
	}
}

func (fs *flagSet) boolVar(p *bool, usage string, names ...string) {
	fs.define(names)
	for i, n := range names {
		fs.BoolVar(p, n, false, map[bool]string{true: usage}[i == 0])
	}
}

// keyValues parses key=value arguments.
func keyValues(args []string) (map[string]string, error) {
	if len(args) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(args))
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, usagef("%q is not key=value", a)
		}
		m[k] = v
	}
	return m, nil
}

func (fs *flagSet) floatVar(p *float64, def float64, usage string, names ...string) {
	fs.define(names)
	for i, n := range names {
		fs.Float64Var(p, n, def, map[bool]string{true: usage}[i == 0])
	}
}

package node

import (
	"strconv"
	"strings"
)

// keyLines maps each key and table of a TOML document to the line it is
// written on, so that a configuration error can name the line.
// BurntSushi/toml keeps positions per dotted key only, which cannot tell
// the tables of [[ipcp]] #1 from those of #2; this scanner indexes arrays
// of tables, as the decoded document does.
//
// Paths are a key's segments joined by pathSep, an array element's index
// written as "[i]" (0-based): ipcp[1].udp.addr.
type keyLines map[string]int

const pathSep = "\x1f"

// pathKey is the canonical form of a path of keys (string) and array
// indices (int).
func pathKey(path []any) string {
	var b strings.Builder
	for i, s := range path {
		if i > 0 {
			b.WriteString(pathSep)
		}
		switch s := s.(type) {
		case string:
			b.WriteString(s)
		case int:
			b.WriteString("[" + strconv.Itoa(s) + "]")
		}
	}
	return b.String()
}

// line returns the line of path, or of its nearest ancestor that has one;
// 0 if none does.
func (k keyLines) line(path []any) int {
	for n := len(path); n > 0; n-- {
		if l, ok := k[pathKey(path[:n])]; ok {
			return l
		}
	}
	return 0
}

// scanKeyLines indexes a document that BurntSushi/toml parsed without
// error; on anything it does not understand it stops and returns what it
// has (lines are a help in messages, never needed for correctness).
func scanKeyLines(doc string) keyLines {
	s := &tomlScanner{src: doc, line: 1, lines: keyLines{}, aot: map[string]int{}}
	defer func() { _ = recover() }() // a scanner slip must not hide the real error
	s.document()
	return s.lines
}

type tomlScanner struct {
	src   string
	i     int
	line  int
	lines keyLines
	aot   map[string]int // array of tables (canonical path) → elements seen
	cur   []any          // the current table
}

func (s *tomlScanner) eof() bool { return s.i >= len(s.src) }

func (s *tomlScanner) peek() byte {
	if s.eof() {
		return 0
	}
	return s.src[s.i]
}

func (s *tomlScanner) next() byte {
	c := s.src[s.i]
	s.i++
	if c == '\n' {
		s.line++
	}
	return c
}

// skipSpace skips blanks and, if newlines, also newlines and comments.
func (s *tomlScanner) skipSpace(newlines bool) {
	for !s.eof() {
		switch c := s.peek(); {
		case c == ' ' || c == '\t' || c == '\r':
			s.next()
		case c == '#':
			for !s.eof() && s.peek() != '\n' {
				s.next()
			}
		case c == '\n' && newlines:
			s.next()
		default:
			return
		}
	}
}

func (s *tomlScanner) document() {
	for {
		s.skipSpace(true)
		if s.eof() {
			return
		}
		line := s.line
		if s.peek() == '[' {
			s.next()
			array := s.peek() == '['
			if array {
				s.next()
			}
			keys := s.key()
			s.skipSpace(false)
			s.next() // ]
			if array {
				s.next() // ]
			}
			s.header(keys, array, line)
			continue
		}
		keys := s.key()
		s.skipSpace(false)
		s.next() // =
		path := append(append([]any(nil), s.cur...), keys...)
		s.record(path, line)
		s.value(path)
	}
}

// header opens table keys (an element of an array of tables if array).
func (s *tomlScanner) header(keys []any, array bool, line int) {
	var path []any
	for i, k := range keys {
		path = append(path, k)
		if array && i == len(keys)-1 {
			ck := pathKey(path)
			n := s.aot[ck]
			s.aot[ck] = n + 1
			s.record(path, line)
			path = append(path, n)
			break
		}
		if n, ok := s.aot[pathKey(path)]; ok {
			path = append(path, n-1) // a sub-table of the latest element
		}
		s.record(path, line) // an implicit table is where first mentioned
	}
	s.record(path, line)
	s.cur = path
}

func (s *tomlScanner) record(path []any, line int) {
	k := pathKey(path)
	if _, ok := s.lines[k]; !ok {
		s.lines[k] = line
	}
}

// key reads a dotted key: bare or quoted segments.
func (s *tomlScanner) key() []any {
	var keys []any
	for {
		s.skipSpace(false)
		var k string
		switch s.peek() {
		case '"', '\'':
			k = s.str()
		default:
			start := s.i
			for !s.eof() {
				c := s.peek()
				if c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
					s.next()
					continue
				}
				break
			}
			k = s.src[start:s.i]
		}
		keys = append(keys, k)
		s.skipSpace(false)
		if s.peek() != '.' {
			return keys
		}
		s.next()
	}
}

// str reads a basic or literal string, single- or multi-line, and returns
// its contents (escapes of basic strings decoded where it matters for keys).
func (s *tomlScanner) str() string {
	q := s.next()
	if strings.HasPrefix(s.src[s.i:], string([]byte{q, q})) { // multi-line
		s.next()
		s.next()
		delim := string([]byte{q, q, q})
		start := s.i
		for !strings.HasPrefix(s.src[s.i:], delim) {
			if q == '"' && s.peek() == '\\' {
				s.next()
			}
			s.next()
		}
		body := s.src[start:s.i]
		s.next()
		s.next()
		s.next()
		for s.peek() == q { // up to two quotes may close the body
			s.next()
		}
		return body
	}
	start := s.i
	for s.peek() != q {
		if q == '"' && s.peek() == '\\' {
			s.next()
		}
		s.next()
	}
	raw := s.src[start:s.i]
	s.next()
	if q == '"' && strings.Contains(raw, `\`) {
		if u, err := strconv.Unquote(`"` + raw + `"`); err == nil {
			return u
		}
	}
	return raw
}

// value skips a value, recording the keys of inline tables under path.
func (s *tomlScanner) value(path []any) {
	s.skipSpace(false)
	switch s.peek() {
	case '"', '\'':
		s.str()
	case '{':
		s.next()
		for {
			s.skipSpace(true)
			if s.peek() == '}' || s.eof() {
				s.next()
				return
			}
			start := s.i
			line := s.line
			keys := s.key()
			s.skipSpace(false)
			s.next() // =
			p := append(append([]any(nil), path...), keys...)
			s.record(p, line)
			s.value(p)
			s.skipSpace(true)
			if s.peek() == ',' || s.i == start {
				s.next()
			}
		}
	case '[':
		s.next()
		for i := 0; ; i++ {
			s.skipSpace(true)
			if s.peek() == ']' || s.eof() {
				s.next()
				return
			}
			start := s.i
			p := append(append([]any(nil), path...), i)
			s.record(p, s.line)
			s.value(p)
			s.skipSpace(true)
			if s.peek() == ',' || s.i == start {
				s.next() // the separator, or a byte this scanner does not know
			}
		}
	default: // number, boolean, date-time: up to a delimiter
		for !s.eof() {
			switch s.peek() {
			case ',', ']', '}', '#', '\n', '\r':
				return
			case ' ':
				// a date-time may hold one space ("1979-05-27 07:32:00")
				if s.i+1 < len(s.src) && s.src[s.i+1] >= '0' && s.src[s.i+1] <= '9' {
					s.next()
					continue
				}
				return
			}
			s.next()
		}
	}
}

// Package jsonscan checks JSON documents and walks an object's members in
// one pass, without decoding them. The submit path checks every job's
// payload (and the coordinator every line of a jobs file); encoding/json's
// reflection and per-byte state machine cost several times more.
//
// It accepts exactly what encoding/json.Valid accepts, including its
// nesting limit; like encoding/json it does not check UTF-8 inside strings.
package jsonscan

// maxDepth is encoding/json's nesting limit.
const maxDepth = 10000

// Valid reports whether b is one JSON value, with optional whitespace
// around it.
func Valid(b []byte) bool {
	end, ok := Skip(b, SkipSpace(b, 0))
	return ok && SkipSpace(b, end) == len(b)
}

// SkipSpace returns the index of the first byte at or after i that is not
// JSON whitespace.
func SkipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t' || b[i] == '\r') {
		i++
	}
	return i
}

// Skip checks the JSON value that starts at b[i] and returns the index just
// past it.
func Skip(b []byte, i int) (int, bool) { return skip(b, i, 0) }

// skip is Skip inside depth open containers.
func skip(b []byte, i, depth int) (int, bool) {
	// containers holds '{' or '[' per open level; afterValue is where a
	// value just ended, so a comma or a closing bracket must follow.
	var stack [32]byte
	containers := stack[:0]
	for {
		// A value starts at i.
		if i >= len(b) {
			return i, false
		}
		switch c := b[i]; {
		case c == '{' || c == '[':
			if depth+len(containers) >= maxDepth {
				return i, false
			}
			containers = append(containers, c)
			i = SkipSpace(b, i+1)
			if i < len(b) && (c == '{' && b[i] == '}' || c == '[' && b[i] == ']') {
				i++
				containers = containers[:len(containers)-1]
				break
			}
			if c == '{' {
				var ok bool
				if i, ok = member(b, i); !ok {
					return i, false
				}
			}
			continue
		case c == '"':
			end, ok := String(b, i)
			if !ok {
				return end, false
			}
			i = end
		case c == '-' || c >= '0' && c <= '9':
			end, ok := Number(b, i)
			if !ok {
				return end, false
			}
			i = end
		case c == 't':
			if !lit(b, i, "true") {
				return i, false
			}
			i += 4
		case c == 'f':
			if !lit(b, i, "false") {
				return i, false
			}
			i += 5
		case c == 'n':
			if !lit(b, i, "null") {
				return i, false
			}
			i += 4
		default:
			return i, false
		}
		// A value ended at i: close containers or move to the next value.
		for {
			if len(containers) == 0 {
				return i, true
			}
			i = SkipSpace(b, i)
			if i >= len(b) {
				return i, false
			}
			top := containers[len(containers)-1]
			if b[i] == ',' {
				i = SkipSpace(b, i+1)
				if top == '{' {
					var ok bool
					if i, ok = member(b, i); !ok {
						return i, false
					}
				}
				break
			}
			if top == '{' && b[i] == '}' || top == '[' && b[i] == ']' {
				i++
				containers = containers[:len(containers)-1]
				continue
			}
			return i, false
		}
	}
}

// member checks an object member's key and colon at b[i] and returns where
// its value starts.
func member(b []byte, i int) (int, bool) {
	if i >= len(b) || b[i] != '"' {
		return i, false
	}
	end, ok := String(b, i)
	if !ok {
		return end, false
	}
	i = SkipSpace(b, end)
	if i >= len(b) || b[i] != ':' {
		return i, false
	}
	return SkipSpace(b, i+1), true
}

func lit(b []byte, i int, s string) bool {
	return len(b)-i >= len(s) && string(b[i:i+len(s)]) == s
}

// String checks the JSON string that starts at b[i] (a quote) and returns
// the index just past its closing quote.
func String(b []byte, i int) (int, bool) {
	end, _, ok := str(b, i)
	return end, ok
}

// str is String that also says whether the string has escapes or bytes
// outside ASCII, which encoding/json would rewrite when unquoting.
func str(b []byte, i int) (end int, escaped, ok bool) {
	i++
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			return i + 1, escaped, true
		case c < 0x20:
			return i, escaped, false
		case c >= 0x80:
			escaped = true
			i++
		case c == '\\':
			escaped = true
			if i+1 >= len(b) {
				return i, escaped, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if len(b)-i < 6 || !hex(b[i+2]) || !hex(b[i+3]) || !hex(b[i+4]) || !hex(b[i+5]) {
					return i, escaped, false
				}
				i += 6
			default:
				return i, escaped, false
			}
		default:
			i++
		}
	}
	return i, escaped, false
}

func hex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// Number checks the JSON number that starts at b[i] and returns the index
// just past it.
func Number(b []byte, i int) (int, bool) {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(b, i+1)
	default:
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return j, false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return j, false
		}
		i = j
	}
	return i, true
}

func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// Member is one member of a JSON object: its key as written between the
// quotes and its value's bytes. NeedsUnquote says the key has escapes or
// bytes outside ASCII: unquote it (encoding/json) before comparing.
type Member struct {
	Key          []byte
	NeedsUnquote bool
	Value        []byte
}

// Object checks that b is one JSON value, with optional whitespace around
// it (valid), says whether it is an object (isObject) and, if it is, calls
// fn for each of its members in order. When b turns out not to be valid,
// fn may have seen some of its members.
func Object(b []byte, fn func(m Member)) (valid, isObject bool) {
	i := SkipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return Valid(b), false
	}
	i = SkipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return SkipSpace(b, i+1) == len(b), true
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return false, true
		}
		kend, esc, ok := str(b, i)
		if !ok {
			return false, true
		}
		key := b[i+1 : kend-1]
		i = SkipSpace(b, kend)
		if i >= len(b) || b[i] != ':' {
			return false, true
		}
		vstart := SkipSpace(b, i+1)
		vend, ok := skip(b, vstart, 1)
		if !ok {
			return false, true
		}
		fn(Member{Key: key, NeedsUnquote: esc, Value: b[vstart:vend]})
		i = SkipSpace(b, vend)
		if i >= len(b) {
			return false, true
		}
		if b[i] == '}' {
			return SkipSpace(b, i+1) == len(b), true
		}
		if b[i] != ',' {
			return false, true
		}
		i = SkipSpace(b, i+1)
	}
}

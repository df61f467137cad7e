package search

import (
	"bytes"
	"math"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// Query is a parsed search on one resource type.
type Query struct {
	Type  string
	Terms []*Term // all must match
	Sort  []SortKey
	// Count is the page size (-1 when not given).
	Count       int
	Cursor      string
	Include     []Include
	RevInclude  []Include
	SummaryOnly bool // _summary=count
	Total       bool // _total=accurate
	// Ignored lists parameters not applied, each with the reason (safe to
	// show: names only, never values).
	Ignored []string
}

// Include is one _include (Source:param[:Target]) or _revinclude.
type Include struct {
	Source, Param, Target string
}

// SortKey is one _sort parameter.
type SortKey struct {
	Param string
	Kind  byte
	Desc  bool
}

// Term is one search parameter of a query: its values are alternatives.
type Term struct {
	Param    *Param
	Modifier string
	Values   []Value
	Missing  *bool // :missing
}

// Value is one alternative of a term.
type Value struct {
	Raw    string
	Prefix string // eq, ne, gt, lt, ge, le, sa, eb, ap
	// token / :identifier
	System    string
	Code      string
	HasSystem bool
	// reference
	RefType, RefID string
	// date, number, quantity
	Lo, Hi int64
	Num    float64
	// Precision is half the unit of the last given digit of a number.
	Precision float64
}

// control parameters the server understands beside search parameters.
var control = map[string]bool{"_count": true, "_cursor": true, "_sort": true, "_include": true,
	"_revinclude": true, "_summary": true, "_total": true, "_format": true}

// ParseQuery parses the parameters of a search on typ. Parameters that are
// unknown, unsupported or malformed are not applied: they are listed in
// Ignored, and the caller decides (lenient: report; strict: refuse).
func (r *Registry) ParseQuery(typ string, q url.Values) *Query {
	out := &Query{Type: typ, Count: -1}
	names := make([]string, 0, len(q))
	for n := range q {
		names = append(names, n)
	}
	sort.Strings(names)
	ignore := func(name, why string) {
		out.Ignored = append(out.Ignored, safeName(name)+": "+why)
	}
	for _, name := range names {
		vals := q[name]
		if control[name] {
			r.parseControl(out, name, vals, ignore)
			continue
		}
		code, mod, _ := strings.Cut(name, ":")
		p := r.Param(typ, code)
		if p == nil {
			if strings.Contains(code, ".") {
				ignore(name, "chained parameters are not supported")
			} else {
				ignore(name, "unknown search parameter")
			}
			continue
		}
		if !p.Supported() {
			ignore(name, p.Why)
			continue
		}
		for _, v := range vals {
			t, why := parseTerm(p, mod, v)
			if why != "" {
				ignore(name, why)
				continue
			}
			out.Terms = append(out.Terms, t)
		}
	}
	return out
}

func (r *Registry) parseControl(out *Query, name string, vals []string, ignore func(string, string)) {
	v := vals[len(vals)-1]
	switch name {
	case "_count":
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			ignore(name, "must be a non-negative integer")
			return
		}
		out.Count = n
	case "_cursor":
		out.Cursor = v
	case "_summary":
		if v == "count" {
			out.SummaryOnly = true
		} else if v != "false" {
			ignore(name, "only _summary=count is supported")
		}
	case "_total":
		switch v {
		case "accurate":
			out.Total = true
		case "none", "estimate":
		default:
			ignore(name, "must be none, estimate or accurate")
		}
	case "_sort":
		for _, s := range strings.Split(v, ",") {
			desc := strings.HasPrefix(s, "-")
			s = strings.TrimPrefix(s, "-")
			var kind byte
			switch s {
			case "_id":
				kind = KindToken
			case "_lastUpdated":
				kind = KindDate
			default:
				p := r.Param(out.Type, s)
				if p == nil || !p.Supported() || (p.Kind != KindDate && p.Kind != KindString) {
					ignore(name, "sorting is supported by _id, _lastUpdated, date and string parameters")
					continue
				}
				kind = p.Kind
			}
			out.Sort = append(out.Sort, SortKey{Param: s, Kind: kind, Desc: desc})
		}
	case "_include", "_revinclude":
		for _, v := range vals {
			if strings.HasSuffix(v, ":iterate") {
				ignore(name, ":iterate is not supported (one level only)")
				continue
			}
			parts := strings.Split(v, ":")
			if len(parts) < 2 || len(parts) > 3 {
				ignore(name, "must be Type:param[:TargetType]")
				continue
			}
			inc := Include{Source: parts[0], Param: parts[1]}
			if len(parts) == 3 {
				inc.Target = parts[2]
			}
			if name == "_include" && inc.Source != out.Type {
				ignore(name, "the source type must be the searched type")
				continue
			}
			if p := r.Param(inc.Source, inc.Param); p == nil || !p.Supported() || p.Kind != KindReference {
				ignore(name, "not a supported reference parameter")
				continue
			}
			if name == "_include" {
				out.Include = append(out.Include, inc)
			} else {
				out.RevInclude = append(out.RevInclude, inc)
			}
		}
	}
}

func safeName(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == ':' || c == '.') {
			return "(invalid name)"
		}
	}
	return s
}

var prefixes = []string{"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"}

func splitPrefix(s string) (string, string) {
	if len(s) > 2 {
		for _, p := range prefixes {
			if strings.HasPrefix(s, p) && (s[2] >= '0' && s[2] <= '9' || s[2] == '-' || s[2] == '.') {
				return p, s[2:]
			}
		}
	}
	return "eq", s
}

func parseTerm(p *Param, mod, raw string) (*Term, string) {
	t := &Term{Param: p, Modifier: mod}
	if mod == "missing" {
		switch raw {
		case "true", "false":
			b := raw == "true"
			t.Missing = &b
			return t, ""
		}
		return nil, ":missing must be true or false"
	}
	if mod != "" && strings.HasPrefix(p.Code, "_") {
		return nil, "modifiers are not supported on " + p.Code
	}
	switch mod {
	case "":
	case "exact", "contains":
		if p.Kind != KindString {
			return nil, "modifier :" + mod + " applies to string parameters"
		}
	case "not":
		if p.Kind != KindToken {
			return nil, "modifier :not applies to token parameters"
		}
	case "identifier":
		if p.Kind != KindReference {
			return nil, "modifier :identifier applies to reference parameters"
		}
	default:
		if !(p.Kind == KindReference && mod != "" && mod[0] >= 'A' && mod[0] <= 'Z') {
			return nil, "modifier not supported"
		}
	}
	for _, alt := range splitOr(raw) {
		v := Value{Raw: alt}
		switch {
		case p.Code == "_id":
			v.Code = alt
		case p.Kind == KindToken || mod == "identifier":
			if i := strings.IndexByte(alt, '|'); i >= 0 {
				v.System, v.Code, v.HasSystem = alt[:i], alt[i+1:], true
			} else {
				v.Code = alt
			}
			if v.Code == "" && !v.HasSystem {
				return nil, "empty value"
			}
		case p.Kind == KindReference:
			if typ, id, ok := SplitReference(alt); ok {
				v.RefType, v.RefID = typ, id
			} else if !strings.Contains(alt, "/") {
				v.RefID = alt
				if mod != "" {
					v.RefType = mod
				} else if len(p.Targets) == 1 {
					v.RefType = p.Targets[0]
				} else if p.Code == "patient" {
					// Every R4 "patient" parameter selects references to
					// Patients (some list Group among their targets only
					// because one of their base types allows it).
					v.RefType = "Patient"
				}
			} else {
				v.RefID = alt // a URL: matched as a whole
			}
		case p.Kind == KindDate:
			pre, rest := splitPrefix(alt)
			lo, hi, err := ParseDate(rest)
			if err != nil {
				return nil, "not a FHIR date"
			}
			v.Prefix, v.Lo, v.Hi = pre, lo, hi
		case p.Kind == KindNumber || p.Kind == KindQuantity:
			pre, rest := splitPrefix(alt)
			num, sys, code := rest, "", ""
			if p.Kind == KindQuantity {
				parts := strings.SplitN(rest, "|", 3)
				num = parts[0]
				if len(parts) == 3 {
					sys, code = parts[1], parts[2]
				} else if len(parts) == 2 {
					return nil, "a quantity is number|system|code"
				}
			}
			f, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return nil, "not a number"
			}
			v.Prefix, v.Num, v.System, v.Code = pre, f, sys, code
			v.Precision = precision(num)
		case p.Kind == KindString, p.Kind == KindURI:
			if alt == "" {
				return nil, "empty value"
			}
		}
		t.Values = append(t.Values, v)
	}
	return t, ""
}

// splitOr splits on commas not escaped with a backslash.
func splitOr(s string) []string {
	var out []string
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s):
			i++
			b.WriteByte(s[i])
		case s[i] == ',':
			out = append(out, b.String())
			b.Reset()
		default:
			b.WriteByte(s[i])
		}
	}
	return append(out, b.String())
}

func precision(num string) float64 {
	num = strings.TrimLeft(num, "-+")
	if i := strings.IndexAny(num, "eE"); i >= 0 {
		num = num[:i]
	}
	dec := 0
	if i := strings.IndexByte(num, '.'); i >= 0 {
		dec = len(num) - i - 1
	}
	return 0.5 * math.Pow(10, -float64(dec))
}

// Drivable reports whether the term's matches can be listed from the
// inverted index (Prefixes is exact, then).
func (t *Term) Drivable() bool {
	if t.Missing != nil || t.Param.Code == "_id" || t.Param.Code == "_lastUpdated" {
		return false
	}
	switch t.Modifier {
	case "not", "contains":
		return false
	}
	if !Indexed(t.Param.Kind) {
		return false
	}
	for _, v := range t.Values {
		if (t.Param.Kind == KindToken || t.Modifier == "identifier") && v.HasSystem && v.Code == "" {
			return false
		}
	}
	return true
}

// Rank orders drivable terms: lower is expected to be more selective.
func (t *Term) Rank() int {
	switch {
	case t.Param.Kind == KindReference && t.Modifier != "identifier":
		return 0
	case t.Modifier == "identifier" || t.Param.Code == "identifier":
		return 1
	case t.Param.Kind == KindToken && t.Values[0].HasSystem:
		return 2
	case t.Param.Kind == KindURI:
		return 2
	case t.Param.Kind == KindToken:
		return 3
	case t.Modifier == "exact":
		return 4
	}
	return 5
}

// Prefixes are the inverted-index prefixes whose keys hold every match of
// the term (and, for string prefix search, possibly more: Match decides).
func (t *Term) Prefixes(typ string) [][]byte {
	param := t.Param.Code
	if t.Modifier == "identifier" {
		param += ":identifier"
	}
	base := ParamPrefix(typ, param)
	var out [][]byte
	for _, v := range t.Values {
		k := bytes.Clone(base)
		switch {
		case t.Param.Kind == KindToken || t.Modifier == "identifier":
			k = append(k, v.Code+"\x01"...)
			if v.HasSystem {
				k = append(k, v.System+"\x00"...)
			}
		case t.Param.Kind == KindReference:
			k = append(k, v.RefID+"\x01"...)
			if v.RefType != "" {
				k = append(k, v.RefType+"\x00"...)
			}
		case t.Param.Kind == KindString:
			k = append(k, Normalize(v.Raw)...)
			if t.Modifier == "exact" {
				k = append(k, "\x01"+v.Raw+"\x00"...)
			}
		case t.Param.Kind == KindURI:
			k = append(k, v.Raw+"\x00"...)
		}
		out = append(out, k)
	}
	return out
}

// Match reports whether a resource with this id and these entries (sorted
// by parameter) satisfies the term.
func (t *Term) Match(id string, es []Entry) bool {
	if t.Param.Code == "_id" {
		for _, v := range t.Values {
			if v.Code == id {
				return true
			}
		}
		return false
	}
	param := t.Param.Code
	if t.Modifier == "identifier" {
		param += ":identifier"
	}
	mine := Of(es, param)
	if t.Missing != nil {
		return *t.Missing == (len(mine) == 0)
	}
	if t.Modifier == "not" {
		for _, v := range t.Values {
			for _, e := range mine {
				if matchValue(t, v, e) {
					return false
				}
			}
		}
		return true
	}
	for _, v := range t.Values {
		for _, e := range mine {
			if matchValue(t, v, e) {
				return true
			}
		}
	}
	return false
}

func matchValue(t *Term, v Value, e Entry) bool {
	switch {
	case t.Param.Kind == KindToken || t.Modifier == "identifier":
		sys, code := DecodeToken(e.Value)
		if v.HasSystem && sys != v.System {
			return false
		}
		return v.Code == "" || code == v.Code
	case t.Param.Kind == KindReference:
		typ, id := DecodeReference(e.Value)
		return id == v.RefID && (v.RefType == "" || typ == v.RefType)
	case t.Param.Kind == KindString:
		norm, orig := DecodeString(e.Value)
		switch t.Modifier {
		case "exact":
			return orig == v.Raw
		case "contains":
			return strings.Contains(norm, Normalize(v.Raw))
		}
		return strings.HasPrefix(norm, Normalize(v.Raw))
	case t.Param.Kind == KindURI:
		return string(e.Value) == v.Raw
	case t.Param.Kind == KindDate:
		lo, hi, ok := DecodeRange(e.Value)
		return ok && compareRange(v.Prefix, v.Lo, v.Hi, lo, hi)
	case t.Param.Kind == KindNumber:
		f, ok := DecodeFloat(e.Value)
		return ok && compareNumber(v, f)
	case t.Param.Kind == KindQuantity:
		f, sys, code, unit, ok := DecodeQuantity(e.Value)
		if !ok || (v.System != "" && sys != v.System) || (v.Code != "" && code != v.Code && unit != v.Code) {
			return false
		}
		return compareNumber(v, f)
	}
	return false
}

// compareRange compares a resource's range [rl, rh) with the search
// value's [pl, ph) under a prefix (FHIR R4 search, 3.1.1.4.5.4).
func compareRange(prefix string, pl, ph, rl, rh int64) bool {
	switch prefix {
	case "ne":
		return !(pl <= rl && rh <= ph)
	case "gt":
		return rh > ph
	case "lt":
		return rl < pl
	case "ge":
		return rh > pl
	case "le":
		return rl < ph
	case "sa":
		return rl >= ph
	case "eb":
		return rh <= pl
	case "ap":
		return rl < ph && rh > pl
	}
	return pl <= rl && rh <= ph
}

func compareNumber(v Value, f float64) bool {
	switch v.Prefix {
	case "ne":
		return math.Abs(f-v.Num) > v.Precision
	case "gt", "sa":
		return f > v.Num
	case "lt", "eb":
		return f < v.Num
	case "ge":
		return f >= v.Num
	case "le":
		return f <= v.Num
	case "ap":
		return math.Abs(f-v.Num) <= math.Max(math.Abs(v.Num)*0.1, v.Precision)
	}
	return math.Abs(f-v.Num) <= v.Precision
}

// SortValue is the byte-comparable sort key of a resource for one _sort
// parameter; ok is false when the resource has no value (it then sorts
// last either way).
func SortValue(k SortKey, id string, es []Entry) ([]byte, bool) {
	if k.Param == "_id" {
		return []byte(id), true
	}
	mine := Of(es, k.Param)
	if len(mine) == 0 {
		return nil, false
	}
	var best []byte
	for _, e := range mine {
		v := e.Value
		switch k.Kind {
		case KindDate:
			v = v[:8] // the start of the range
		case KindString:
			n, _ := DecodeString(v)
			v = []byte(n)
		}
		if best == nil || (!k.Desc && bytes.Compare(v, best) < 0) || (k.Desc && bytes.Compare(v, best) > 0) {
			best = v
		}
	}
	return best, true
}

// Needles are byte strings one of which a forward record must contain for
// a drivable term to match it: a cheap test before decoding the record.
// nil when the term is not drivable.
func (t *Term) Needles() [][]byte {
	if !t.Drivable() {
		return nil
	}
	var out [][]byte
	for _, v := range t.Values {
		var n string
		switch {
		case t.Param.Kind == KindToken || t.Modifier == "identifier":
			n = v.Code + "\x01"
			if v.HasSystem {
				n += v.System
			}
		case t.Param.Kind == KindReference:
			n = v.RefID + "\x01" + v.RefType
		case t.Param.Kind == KindString:
			n = Normalize(v.Raw)
			if t.Modifier == "exact" {
				n += "\x01" + v.Raw
			}
		case t.Param.Kind == KindURI:
			n = v.Raw
		}
		out = append(out, []byte(n))
	}
	return out
}

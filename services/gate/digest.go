package gate

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strconv"
)

// InputDigest is the SHA-256 of the input's JSON (encoding/json's bytes
// for Input). The JSON is written by hand, without reflection, into one
// buffer: marshalling was a tenth of an evaluation. TestInputDigestIsJSON
// checks the bytes against encoding/json.
func InputDigest(in Input) string {
	sum := sha256.Sum256(appendInputJSON(make([]byte, 0, 1024), in))
	return hex.EncodeToString(sum[:])
}

func appendInputJSON(b []byte, in Input) []byte {
	b = append(b, `{"operation":`...)
	b = appendJSONString(b, in.Operation)
	b = append(b, `,"target":`...)
	b = appendJSONString(b, in.Target)
	b = append(b, `,"now_unix":`...)
	b = strconv.AppendInt(b, in.NowUnix, 10)
	b = append(b, `,"desired":`...)
	if in.Desired == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '{')
		var arr [8]string
		for i, k := range sortedKeys(arr[:0], in.Desired) {
			if i > 0 {
				b = append(b, ',')
			}
			d := in.Desired[k]
			b = appendJSONString(b, k)
			b = append(b, `:{"version":`...)
			b = strconv.AppendUint(b, d.Version, 10)
			b = append(b, `,"digest":`...)
			b = appendJSONString(b, d.Digest)
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	b = append(b, `,"required_databases":`...)
	if in.RequiredDatabases == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, d := range in.RequiredDatabases {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, d)
		}
		b = append(b, ']')
	}
	b = append(b, `,"members":`...)
	if in.Members == nil {
		return append(b, "null}"...)
	}
	b = append(b, '[')
	for i, m := range in.Members {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendMemberJSON(b, m)
	}
	return append(b, "]}"...)
}

func appendMemberJSON(b []byte, m Member) []byte {
	b = append(b, `{"name":`...)
	b = appendJSONString(b, m.Name)
	b = append(b, `,"role":`...)
	b = appendJSONString(b, m.Role)
	b = append(b, `,"status":`...)
	b = appendJSONString(b, m.Status)
	b = append(b, `,"transfer":`...)
	b = appendJSONString(b, m.Transfer)
	b = append(b, `,"last_lsn":`...)
	b = strconv.AppendUint(b, m.LastLSN, 10)
	b = append(b, `,"durable_lsn":`...)
	b = strconv.AppendUint(b, m.DurableLSN, 10)
	b = append(b, `,"lag_records":`...)
	b = strconv.AppendUint(b, m.LagRecords, 10)
	b = append(b, `,"databases":`...)
	if m.Databases == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, d := range m.Databases {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"name":`...)
			b = appendJSONString(b, d.Name)
			b = append(b, `,"status":`...)
			b = appendJSONString(b, d.Status)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"software_version":`...)
	b = appendJSONString(b, m.SoftwareVersion)
	b = append(b, `,"journal_format":`...)
	b = strconv.AppendInt(b, int64(m.JournalFormat), 10)
	b = append(b, `,"protocol_version":`...)
	b = strconv.AppendInt(b, int64(m.ProtocolVersion), 10)
	b = append(b, `,"cert_not_after_unix":`...)
	b = strconv.AppendInt(b, m.CertNotAfter, 10)
	b = append(b, `,"effective":`...)
	b = appendStringMapJSON(b, m.Effective)
	if len(m.Unalignable) > 0 { // omitempty
		b = append(b, `,"unalignable":`...)
		b = appendStringMapJSON(b, m.Unalignable)
	}
	return append(b, '}')
}

func appendStringMapJSON(b []byte, m map[string]string) []byte {
	if m == nil {
		return append(b, "null"...)
	}
	b = append(b, '{')
	var arr [8]string
	for i, k := range sortedKeys(arr[:0], m) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONString(b, m[k])
	}
	return append(b, '}')
}

// sortedKeys appends the keys of m to keys, sorted (encoding/json's map
// order). With a small array behind keys it allocates nothing.
func sortedKeys[V any](keys []string, m map[string]V) []string {
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// appendJSONString appends s as encoding/json writes it. Plain printable
// ASCII is copied; anything encoding/json escapes (quotes, backslashes,
// control characters, <, >, &, non-ASCII) goes through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

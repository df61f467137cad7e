package wire

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/tandemhealth/tandem/mirror/failover"
)

// randomMessage fills every field of a message, each zero a third of the
// time, strings among those encoding/json escapes.
func randomMessage(r *rand.Rand) failover.Message {
	var m failover.Message
	fill(r, reflect.ValueOf(&m).Elem())
	return m
}

func fill(r *rand.Rand, v reflect.Value) {
	if r.IntN(3) == 0 {
		return // zero
	}
	switch v.Kind() {
	case reflect.Uint8:
		v.SetUint(uint64(r.IntN(256)))
	case reflect.Uint64:
		v.SetUint([]uint64{1, 9, 1 << 40, ^uint64(0)}[r.IntN(4)])
	case reflect.Bool:
		v.SetBool(true)
	case reflect.String:
		v.SetString([]string{"a", "arbiter", "<b&c>", "é", "q\"\\", "\x00\x1f", "\xff", "\u2028", "x\x7fy"}[r.IntN(9)])
	case reflect.Slice:
		n := r.IntN(4) // 0: empty, not nil
		v.Set(reflect.MakeSlice(v.Type(), n, n))
		for i := range n {
			if v.Type().Elem().Kind() == reflect.Uint8 {
				v.Index(i).SetUint(uint64(r.IntN(256)))
			} else {
				fill(r, v.Index(i))
			}
		}
	case reflect.Struct:
		for i := range v.NumField() {
			fill(r, v.Field(i))
		}
	default:
		panic("fill: a field of kind " + v.Kind().String() + " (teach appendMessage and decodeMessage)")
	}
}

// TestMessageJSON: appendMessage writes what json.Marshal writes, for
// messages with every field set or zero, and decodeMessage reads it back.
func TestMessageJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		m := randomMessage(r)
		want, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		got := appendMessage(nil, &m)
		if !bytes.Equal(got, want) {
			t.Fatalf("message %d:\n got %s\nwant %s", i, got, want)
		}
		back, err := decodeMessage(got)
		if err != nil {
			t.Fatalf("message %d: %v\n%s", i, err, got)
		}
		var viaJSON failover.Message // strings with invalid UTF-8 come back as json reads them
		json.Unmarshal(got, &viaJSON)
		if !reflect.DeepEqual(back, viaJSON) {
			t.Fatalf("message %d:\n got %+v\nwant %+v", i, back, viaJSON)
		}
	}
}

// TestMessageJSONRefuses what it is stricter about than encoding/json.
func TestMessageJSONRefuses(t *testing.T) {
	for _, b := range []string{
		``, `null`, `[]`, `{"type":2}`, `{"Type":2,"Type":2}`, `{"Type":2} {}`, `{"Type":256}`, `{"Type":-1}`,
		`{"Type":1.0}`, `{"Type":1e2}`, `{"Type":02}`, `{"Type":null}`, `{"Reject":tru}`, `{"Reject":truex}`,
		`{"Data":"!!"}`, `{"From":1}`, `{"Nope":1}`, `{"Entries":[{"LSN":1,"Nope":2}]}`, `{"Entries":[1]}`,
		`{"Type":2,}`, `{"Type":2`, `{"From":"a` + "\x01" + `"}`, `{"Record":{"Version":{"Epoch":1,"Seq":2,"X":3}}}`,
		`{"Data":nullx}`,
	} {
		if m, err := decodeMessage([]byte(b)); err == nil {
			t.Errorf("accepted %s: %+v", b, m)
		}
	}
}

// FuzzMessageJSON: whatever decodeMessage accepts, encoding/json (unknown
// fields refused) decodes to the same message.
func FuzzMessageJSON(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		m := randomMessage(r)
		f.Add(appendMessage(nil, &m))
	}
	for _, m := range samples() {
		js, _ := json.Marshal(reflectAllFields(m))
		f.Add(js)
	}
	f.Add([]byte(` { "Type" : 2 , "Entries" : [ { "LSN" : 1 , "Data" : "AQI=" } ] , "From" : "a\u00e9\n" } `))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMessage(b)
		if err != nil {
			return
		}
		var want failover.Message
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&want); err != nil {
			t.Fatalf("accepted what encoding/json refuses (%v): %q", err, b)
		}
		if !reflect.DeepEqual(m, want) {
			t.Fatalf("%q:\n got %+v\nwant %+v", b, m, want)
		}
	})
}

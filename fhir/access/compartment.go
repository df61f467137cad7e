package access

import (
	_ "embed"
	"encoding/json"
	"strings"
)

// compartmentJSON maps each resource type in the R4 patient compartment to
// the top-level elements its compartment parameters point through. It is
// derived from CompartmentDefinition-patient.json and the parameters'
// FHIRPath expressions in SearchParameter-r4.ndjson; TestCompartmentData
// checks it against those files (and rewrites it with -update).
//
//go:embed compartment.json
var compartmentJSON []byte

var compartment = func() map[string][]string {
	var m map[string][]string
	if err := json.Unmarshal(compartmentJSON, &m); err != nil {
		panic("access: compartment.json: " + err.Error())
	}
	return m
}()

// InCompartment reports whether the resource body of type typ is in
// Patient/patient's compartment: it is that Patient, or a reference at one
// of its type's compartment elements points to it.
func InCompartment(typ string, body []byte, patient string) bool {
	if patient == "" {
		return false
	}
	for _, p := range Patients(typ, body) {
		if p == patient {
			return true
		}
	}
	return false
}

// Patients returns the ids of the patients whose compartment holds the
// resource (for Patient resources, the resource's own id first).
func Patients(typ string, body []byte) []string {
	elems, ok := compartment[typ]
	if !ok && typ != "Patient" {
		return nil
	}
	var doc map[string]json.RawMessage
	if json.Unmarshal(body, &doc) != nil {
		return nil
	}
	var out []string
	add := func(id string) {
		for _, x := range out {
			if x == id {
				return
			}
		}
		out = append(out, id)
	}
	if typ == "Patient" {
		var id string
		if json.Unmarshal(doc["id"], &id) == nil && id != "" {
			add(id)
		}
	}
	for _, e := range elems {
		raw, ok := doc[e]
		if !ok {
			continue
		}
		var v any
		if json.Unmarshal(raw, &v) != nil {
			continue
		}
		walkRefs(v, func(ref string) {
			if id, ok := patientRef(ref); ok {
				add(id)
			}
		})
	}
	return out
}

// walkRefs calls fn with every "reference" string inside v.
func walkRefs(v any, fn func(string)) {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			if s, ok := c.(string); ok && k == "reference" {
				fn(s)
			} else {
				walkRefs(c, fn)
			}
		}
	case []any:
		for _, c := range x {
			walkRefs(c, fn)
		}
	}
}

// patientRef returns the id of a (relative or absolute) reference to a
// Patient, without a version.
func patientRef(ref string) (string, bool) {
	i := strings.LastIndex(ref, "Patient/")
	if i < 0 || (i > 0 && ref[i-1] != '/') {
		return "", false
	}
	id := ref[i+len("Patient/"):]
	if j := strings.IndexByte(id, '/'); j >= 0 {
		id = id[:j] // Patient/x/_history/2
	}
	return id, id != ""
}

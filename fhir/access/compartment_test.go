package access

import (
	"bufio"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite compartment.json from the R4 definitions")

const defsDir = "../../../shared/testdata/search-parameters"

func defsPath(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(defsDir, name)
	if _, err := os.Stat(p); err != nil {
		p = filepath.Join("/work/shared/testdata/search-parameters", name)
		if _, err := os.Stat(p); err != nil {
			t.Skip("R4 definitions not available")
		}
	}
	return p
}

// deriveCompartment computes compartment.json's content from the R4
// CompartmentDefinition and SearchParameter definitions.
func deriveCompartment(t *testing.T) map[string][]string {
	var cd struct {
		Resource []struct {
			Code  string   `json:"code"`
			Param []string `json:"param"`
		} `json:"resource"`
	}
	b, err := os.ReadFile(defsPath(t, "CompartmentDefinition-patient.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &cd); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(defsPath(t, "SearchParameter-r4.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	expr := map[string]string{} // Type.code -> expression
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var sp struct {
			Code       string   `json:"code"`
			Base       []string `json:"base"`
			Expression string   `json:"expression"`
		}
		if err := json.Unmarshal(sc.Bytes(), &sp); err != nil {
			t.Fatal(err)
		}
		for _, base := range sp.Base {
			expr[base+"."+sp.Code] = sp.Expression
		}
	}
	out := map[string][]string{}
	for _, r := range cd.Resource {
		if len(r.Param) == 0 {
			continue
		}
		// "Type.elem..." at the start of one alternative of the expression.
		re := regexp.MustCompile(`^\(?` + r.Code + `\.([a-zA-Z]+)`)
		set := map[string]bool{}
		for _, p := range r.Param {
			if p == "{def}" {
				continue
			}
			e, ok := expr[r.Code+"."+p]
			if !ok {
				t.Fatalf("%s: compartment param %s has no search parameter", r.Code, p)
			}
			for _, alt := range strings.Split(e, "|") {
				alt = strings.TrimSpace(alt)
				m := re.FindStringSubmatch(alt)
				if m == nil {
					continue
				}
				elem := m[1]
				if strings.HasPrefix(alt[len(m[0]):], " as ") || strings.HasPrefix(alt[len(m[0]):], ".as(") {
					elem += "Reference" // a choice element: value[x] as Reference
				}
				set[elem] = true
			}
		}
		var elems []string
		for e := range set {
			elems = append(elems, e)
		}
		sort.Strings(elems)
		out[r.Code] = elems
	}
	return out
}

func TestCompartmentData(t *testing.T) {
	want := deriveCompartment(t)
	if *update {
		b, _ := json.MarshalIndent(want, "", " ")
		if err := os.WriteFile("compartment.json", append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !reflect.DeepEqual(compartment, want) {
		t.Fatal("compartment.json differs from the R4 definitions; run go test ./fhir/access -run TestCompartmentData -update")
	}
	for _, typ := range []string{"Observation", "Encounter", "Claim", "ExplanationOfBenefit", "MedicationRequest", "Immunization", "Condition", "Procedure", "CarePlan", "DiagnosticReport"} {
		if len(compartment[typ]) == 0 {
			t.Errorf("%s is not in the patient compartment table", typ)
		}
	}
	if _, ok := compartment["Practitioner"]; ok {
		t.Error("Practitioner has no patient compartment params in R4")
	}
}

package search

import (
	"bufio"
	"bytes"
	_ "embed" // the R4 definitions
	"encoding/json"
	"sort"
)

// SearchParameterFile is a copy of the 1,400 R4 SearchParameter definitions
// (hl7.fhir.core 4.0.1), one per line.
//
//go:embed SearchParameter-r4.ndjson
var SearchParameterFile []byte

// CompartmentFile is the R4 Patient CompartmentDefinition.
//
//go:embed CompartmentDefinition-patient.json
var CompartmentFile []byte

// Kinds of index values (part of the stored format).
const (
	KindString    byte = 's'
	KindToken     byte = 't'
	KindReference byte = 'r'
	KindURI       byte = 'u'
	KindDate      byte = 'd'
	KindQuantity  byte = 'q'
	KindNumber    byte = 'n'
)

var kindOf = map[string]byte{
	"string": KindString, "token": KindToken, "reference": KindReference, "uri": KindURI,
	"date": KindDate, "quantity": KindQuantity, "number": KindNumber,
}

// Param is one search parameter of one resource type.
type Param struct {
	Code    string // the name in a query
	Type    string // FHIR search type: string, token, ...
	Kind    byte   // 0 when unsupported
	Expr    string
	Targets []string // reference target types
	path    *Path
	// Why is set when the parameter is not supported.
	Why string
}

// Supported reports whether the parameter is indexed and searchable.
func (p *Param) Supported() bool { return p.Why == "" }

// Registry holds the search parameters of every resource type.
type Registry struct {
	byType map[string]map[string]*Param
	// compartment: resource type -> parameters that put a resource in a
	// patient's compartment.
	compartment map[string][]string
}

// Common parameters of every resource type, handled by the server itself.
var commonParams = map[string]string{"_id": "token", "_lastUpdated": "date"}

// Load parses the embedded definitions.
func Load() (*Registry, error) {
	return Parse(SearchParameterFile, CompartmentFile)
}

// Parse builds a Registry from NDJSON SearchParameter definitions and a
// Patient CompartmentDefinition.
func Parse(ndjson, compartment []byte) (*Registry, error) {
	r := &Registry{byType: map[string]map[string]*Param{}, compartment: map[string][]string{}}
	sc := bufio.NewScanner(bytes.NewReader(ndjson))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var d struct {
			Code       string   `json:"code"`
			Base       []string `json:"base"`
			Type       string   `json:"type"`
			Expression string   `json:"expression"`
			Target     []string `json:"target"`
		}
		if err := json.Unmarshal(line, &d); err != nil {
			return nil, err
		}
		for _, base := range d.Base {
			if base == "Resource" || base == "DomainResource" {
				continue // _id, _lastUpdated, ... are handled by the server
			}
			p := &Param{Code: d.Code, Type: d.Type, Kind: kindOf[d.Type], Expr: d.Expression, Targets: d.Target}
			switch {
			case p.Kind == 0:
				p.Why = "search parameter type " + d.Type + " is not supported"
			case d.Expression == "":
				p.Why = "no FHIRPath expression"
			default:
				path, err := Compile(d.Expression)
				if err != nil {
					p.Why = "expression outside the supported FHIRPath subset"
				} else {
					p.path = path
				}
			}
			if r.byType[base] == nil {
				r.byType[base] = map[string]*Param{}
			}
			r.byType[base][d.Code] = p
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(compartment) > 0 {
		var cd struct {
			Resource []struct {
				Code  string   `json:"code"`
				Param []string `json:"param"`
			} `json:"resource"`
		}
		if err := json.Unmarshal(compartment, &cd); err != nil {
			return nil, err
		}
		for _, x := range cd.Resource {
			if len(x.Param) > 0 {
				r.compartment[x.Code] = x.Param
			}
		}
	}
	return r, nil
}

// Param returns the parameter code of type typ, or nil.
func (r *Registry) Param(typ, code string) *Param {
	if t, ok := commonParams[code]; ok {
		return &Param{Code: code, Type: t, Kind: kindOf[t]}
	}
	return r.byType[typ][code]
}

// Params lists every parameter of typ (supported or not), sorted by code.
func (r *Registry) Params(typ string) []*Param {
	var out []*Param
	for _, p := range r.byType[typ] {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Code < out[j].Code })
	return out
}

// Types lists the resource types that have parameters, sorted.
func (r *Registry) Types() []string {
	var out []string
	for t := range r.byType {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Compartment returns, for each resource type in the Patient compartment,
// the parameters that link it to the patient.
func (r *Registry) Compartment() map[string][]string { return r.compartment }

// PatientParams are the compartment parameters of typ (nil if typ is not in
// the Patient compartment).
func (r *Registry) PatientParams(typ string) []string { return r.compartment[typ] }

// DisabledDatabase and DisabledKey locate the list of disabled search
// parameters: in the mirrored "system" database, one "Type.code" per line,
// sorted. Changing it is followed by a journaled reindex, so every member
// indexes alike.
const DisabledDatabase = "system"

// DisabledKey is the key of the disabled-parameter list.
var DisabledKey = []byte("search/disabled")

// Without returns a copy of r in which the parameters named "Type.code"
// are unsupported (not indexed, reported when used).
func (r *Registry) Without(disabled []string) *Registry {
	off := map[string]bool{}
	for _, d := range disabled {
		off[d] = true
	}
	out := &Registry{byType: map[string]map[string]*Param{}, compartment: r.compartment}
	for typ, ps := range r.byType {
		m := make(map[string]*Param, len(ps))
		for code, p := range ps {
			if off[typ+"."+code] && p.Supported() {
				c := *p
				c.Why = "disabled by configuration"
				p = &c
			}
			m[code] = p
		}
		out.byType[typ] = m
	}
	return out
}

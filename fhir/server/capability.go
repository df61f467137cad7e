package server

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/tandemhealth/tandem/fhir"
	"github.com/tandemhealth/tandem/fhir/search"
)

type code struct {
	Code string `json:"code"`
}

type searchParam struct {
	Name          string `json:"name"`
	Type          string `json:"type"`
	Documentation string `json:"documentation,omitempty"`
}

type capResource struct {
	Type              string        `json:"type"`
	Interaction       []code        `json:"interaction"`
	Versioning        string        `json:"versioning"`
	ReadHistory       bool          `json:"readHistory"`
	UpdateCreate      bool          `json:"updateCreate"`
	ConditionalCreate bool          `json:"conditionalCreate"`
	ConditionalRead   string        `json:"conditionalRead"`
	ConditionalUpdate bool          `json:"conditionalUpdate"`
	ConditionalDelete string        `json:"conditionalDelete"`
	SearchInclude     []string      `json:"searchInclude,omitempty"`
	SearchRevInclude  []string      `json:"searchRevInclude,omitempty"`
	SearchParam       []searchParam `json:"searchParam"`
	Documentation     string        `json:"documentation,omitempty"`
	Operation         []operation   `json:"operation,omitempty"`
}

type operation struct {
	Name       string `json:"name"`
	Definition string `json:"definition"`
}

// capabilityStatement describes exactly what this package implements.
// Search parameters are those of reg that are supported, per type, with
// how many of the type's R4 parameters that is.
func capabilityStatement(types []string, reg *search.Registry, now time.Time) []byte {
	interactions := []code{{"read"}, {"vread"}, {"update"}, {"delete"}, {"history-instance"}, {"history-type"}, {"create"}, {"search-type"}}
	var res []capResource
	for _, t := range types {
		params := []searchParam{
			{Name: "_id", Type: "token"},
			{Name: "_lastUpdated", Type: "date"},
		}
		var refs []string
		all := reg.Params(t)
		n := 0
		for _, p := range all {
			if !p.Supported() {
				continue
			}
			n++
			params = append(params, searchParam{Name: p.Code, Type: p.Type})
			if p.Kind == search.KindReference {
				refs = append(refs, t+":"+p.Code)
			}
		}
		cr := capResource{
			Type: t, Interaction: interactions, Versioning: "versioned-update",
			ReadHistory: true, UpdateCreate: true, ConditionalCreate: true,
			ConditionalRead: "not-supported", ConditionalUpdate: false, ConditionalDelete: "not-supported",
			SearchParam:   params,
			SearchInclude: refs,
			Documentation: fmt.Sprintf("%d of %d R4 search parameters supported (plus _id and _lastUpdated)", n, len(all)),
		}
		if t == "Patient" {
			cr.Operation = []operation{{Name: "everything", Definition: "http://hl7.org/fhir/OperationDefinition/Patient-everything"}}
		}
		res = append(res, cr)
	}
	cs := map[string]any{
		"resourceType": "CapabilityStatement",
		"status":       "active",
		"date":         fhir.FormatInstant(now),
		"kind":         "instance",
		"software":     map[string]string{"name": "Tandem"},
		"implementation": map[string]string{
			"description": "Tandem FHIR R4 server on a mirrored data node",
		},
		"fhirVersion": "4.0.1",
		"format":      []string{"application/fhir+json", "json"},
		"rest": []map[string]any{{
			"mode": "server",
			"documentation": "Transactions are atomic (one journal record); urn:uuid fullUrl references and conditional references (Type?_id=|identifier=) " +
				"are resolved inside transactions. Batches run each entry independently. Idempotency-Key is honoured on POST, PUT, DELETE and transactions. " +
				"History (newest first) takes _since and is paged by _count and an opaque _cursor; _at is not supported. " +
				"Search (GET [type], POST [type]/_search): string, token, reference, date, quantity, uri and number parameters from the R4 definitions; " +
				"modifiers :exact, :contains, :missing, :not, :identifier, :[Type]; date and number prefixes; _id, _lastUpdated, _count, _sort " +
				"(_id, _lastUpdated, date and string parameters), _include and _revinclude (one level), _summary=count, _total=accurate; " +
				"paged by an opaque _cursor on the sort key and id. Unknown or unsupported parameters are ignored and reported " +
				"(Prefer: handling=lenient, the default) or refused with 400 (handling=strict). Chained and composite parameters are not supported.",
			"resource":    res,
			"interaction": []code{{"transaction"}, {"batch"}, {"history-system"}},
		}},
	}
	b, err := json.Marshal(cs)
	if err != nil {
		panic(err)
	}
	return b
}

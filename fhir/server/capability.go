package server

import (
	"encoding/json"
	"time"

	"github.com/tandemhealth/tandem/fhir"
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
	SearchParam       []searchParam `json:"searchParam"`
}

// capabilityStatement describes exactly what this package implements.
func capabilityStatement(types []string, now time.Time) []byte {
	interactions := []code{{"read"}, {"vread"}, {"update"}, {"delete"}, {"history-instance"}, {"history-type"}, {"create"}, {"search-type"}}
	params := []searchParam{
		{Name: "_id", Type: "token", Documentation: "comma-separated ids"},
		{Name: "identifier", Type: "token", Documentation: "system|value, |value or value (system| alone is not supported)"},
		{Name: "_count", Type: "number", Documentation: "page size, default 50, at most 1000"},
	}
	var res []capResource
	for _, t := range types {
		res = append(res, capResource{
			Type: t, Interaction: interactions, Versioning: "versioned-update",
			ReadHistory: true, UpdateCreate: true, ConditionalCreate: true,
			ConditionalRead: "not-supported", ConditionalUpdate: false, ConditionalDelete: "not-supported",
			SearchParam: params,
		})
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
				"History (newest first) takes _since and is paged by _count and an opaque _cursor; _at is not supported. Search is paged the same way.",
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

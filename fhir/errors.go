package fhir

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
)

// Issue is one issue of an OperationOutcome. Diagnostics and Expression must
// never contain resource content.
type Issue struct {
	Severity    string   `json:"severity"`
	Code        string   `json:"code"`
	Diagnostics string   `json:"diagnostics,omitempty"`
	Expression  []string `json:"expression,omitempty"`
}

// Error is a user-facing error: an HTTP status and the issues of its
// OperationOutcome. Its text is safe to show and to log (no PHI).
type Error struct {
	Status int
	Issues []Issue
}

func (e *Error) Error() string {
	msg := http.StatusText(e.Status)
	for _, is := range e.Issues {
		msg += "; " + is.Code + ": " + is.Diagnostics
		for _, x := range is.Expression {
			msg += " at " + x
		}
	}
	return "fhir: " + msg
}

// Errorf returns an Error with one issue of severity "error".
func Errorf(status int, code, diagnostics string, expression ...string) *Error {
	return &Error{Status: status, Issues: []Issue{{Severity: "error", Code: code, Diagnostics: diagnostics, Expression: expression}}}
}

// AsError returns the *Error in err's chain, or a 500 Error that reveals
// nothing of err.
func AsError(err error) *Error {
	var fe *Error
	if errors.As(err, &fe) {
		return fe
	}
	return Errorf(http.StatusInternalServerError, "exception", "internal error")
}

// Prefix returns a copy of e whose expressions are prefixed with p (for
// errors inside a bundle entry). When p names a resource, drop is its type,
// removed from the start of each expression ("Patient.gender" under
// "Bundle.entry[0].resource" is "Bundle.entry[0].resource.gender").
func (e *Error) Prefix(p, drop string) *Error {
	out := &Error{Status: e.Status, Issues: make([]Issue, len(e.Issues))}
	for i, is := range e.Issues {
		x := make([]string, 0, len(is.Expression))
		for _, s := range is.Expression {
			switch {
			case drop != "" && s == drop:
				x = append(x, p)
			case drop != "" && strings.HasPrefix(s, drop+"."):
				x = append(x, p+s[len(drop):])
			default:
				x = append(x, p+"."+s)
			}
		}
		if len(x) == 0 {
			x = append(x, p)
		}
		is.Expression = x
		out.Issues[i] = is
	}
	return out
}

// OperationOutcome renders issues as an OperationOutcome resource.
func OperationOutcome(issues ...Issue) []byte {
	b, err := json.Marshal(struct {
		ResourceType string  `json:"resourceType"`
		Issue        []Issue `json:"issue"`
	}{"OperationOutcome", issues})
	if err != nil {
		panic(err) // cannot happen: strings only
	}
	return b
}

// Outcome is the OperationOutcome of e.
func (e *Error) Outcome() []byte { return OperationOutcome(e.Issues...) }

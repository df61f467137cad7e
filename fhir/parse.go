package fhir

import (
	"net/http"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
	r4pb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
)

// MaxNestingDepth bounds the depth of elements the parser accepts.
const MaxNestingDepth = 128

// Parser validates R4 JSON resources with google/fhir/go (validating
// unmarshaller, UTC) and splits them into Resources. It is safe for
// concurrent use; build one and share it.
type Parser struct {
	um    *jsonformat.Unmarshaller
	types map[string]bool
	list  []string
}

// NewParser returns a Parser for FHIR R4.
func NewParser() (*Parser, error) {
	um, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		return nil, err
	}
	um.MaxNestingDepth = MaxNestingDepth
	p := &Parser{um: um, types: map[string]bool{}}
	oneof := (&r4pb.ContainedResource{}).ProtoReflect().Descriptor().Oneofs().ByName("oneof_resource")
	for i := 0; i < oneof.Fields().Len(); i++ {
		if m := oneof.Fields().Get(i).Message(); m != nil {
			p.types[string(m.Name())] = true
		}
	}
	for t := range p.types {
		p.list = append(p.list, t)
	}
	sort.Strings(p.list)
	return p, nil
}

// IsType reports whether t is an R4 resource type.
func (p *Parser) IsType(t string) bool { return p.types[t] }

// Types lists the R4 resource types, sorted.
func (p *Parser) Types() []string { return p.list }

// Validate runs google/fhir/go's validating unmarshaller over body and
// returns a 400 Error locating every problem it reports.
func (p *Parser) Validate(body []byte) *Error {
	if _, err := p.um.Unmarshal(body); err != nil {
		return unmarshalError(err)
	}
	return nil
}

// Parse validates body as an R4 resource and splits it into a Resource.
// Unknown resource types are a 404 Error, invalid content a 400 Error.
func (p *Parser) Parse(body []byte) (*Resource, *Error) {
	return p.ParseAs(body, "")
}

// ParseAs is Parse for a body that must be of type typ (any type when typ
// is ""): another resourceType is a 400 Error, found before the costly
// validation.
func (p *Parser) ParseAs(body []byte, typ string) (*Resource, *Error) {
	r, ferr := splitResource(body)
	if ferr != nil {
		return nil, ferr
	}
	if typ != "" && r.Type != typ {
		return nil, Errorf(http.StatusBadRequest, "invalid", "resourceType in the body does not match the URL", "resourceType")
	}
	if !p.types[r.Type] {
		return nil, Errorf(http.StatusNotFound, "not-supported", "unknown resource type", "resourceType")
	}
	if ferr := p.Validate(body); ferr != nil {
		return nil, ferr
	}
	return r, nil
}

const maxIssues = 20

// problem is one error reported by google/fhir/go.
type problem struct{ path, details, field string }

var fieldName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)
var requiredField = regexp.MustCompile(`^missing required field "([A-Za-z0-9_]+)"$`)

// problems extracts the reported errors. google/fhir/go's UnmarshalError is
// internal, so its fields are read by reflection; only Path and Details are
// used (Details never holds content), plus Diagnostics for "unknown field",
// where it is the unknown key's name, shown only if it looks like one.
func problems(err error) []problem {
	var out []problem
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Interface, reflect.Pointer:
			if !v.IsNil() {
				walk(v.Elem())
			}
		case reflect.Slice:
			for i := 0; i < v.Len(); i++ {
				walk(v.Index(i))
			}
		case reflect.Struct:
			path, details, diag := v.FieldByName("Path"), v.FieldByName("Details"), v.FieldByName("Diagnostics")
			if path.Kind() != reflect.String || details.Kind() != reflect.String || diag.Kind() != reflect.String {
				out = append(out, problem{details: "resource could not be parsed"})
				return
			}
			p := problem{path: path.String(), details: details.String()}
			if p.details == "unknown field" {
				if f, err := strconv.Unquote(diag.String()); err == nil && fieldName.MatchString(f) {
					p.field = f
				}
			}
			if m := requiredField.FindStringSubmatch(p.details); m != nil {
				p.field = m[1]
			}
			out = append(out, p)
		default:
			out = append(out, problem{details: "resource could not be parsed"})
		}
	}
	walk(reflect.ValueOf(err))
	return out
}

func unmarshalError(err error) *Error {
	e := &Error{Status: http.StatusBadRequest}
	for _, p := range problems(err) {
		if len(e.Issues) == maxIssues {
			e.Issues = append(e.Issues, Issue{Severity: "error", Code: "too-costly", Diagnostics: "further issues not reported"})
			break
		}
		code := "invalid"
		switch {
		case p.details == "invalid JSON":
			code = "structure"
		case strings.HasPrefix(p.details, "missing required"):
			code = "required"
		case strings.HasPrefix(p.details, "expected") || strings.Contains(p.details, "mismatch") || strings.HasPrefix(p.details, "invalid reference"):
			code = "value"
		case strings.HasPrefix(p.details, "unknown field"):
			code = "structure"
		}
		is := Issue{Severity: "error", Code: code, Diagnostics: p.details}
		switch {
		case p.path != "" && p.field != "":
			is.Expression = []string{p.path + "." + p.field}
		case p.path != "":
			is.Expression = []string{p.path}
		}
		e.Issues = append(e.Issues, is)
	}
	if len(e.Issues) == 0 {
		e.Issues = append(e.Issues, Issue{Severity: "error", Code: "invalid", Diagnostics: "resource is not valid"})
	}
	return e
}

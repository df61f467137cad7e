package fhir_test

import (
	goparser "go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestNoIOImports guards the package doc's promise: package fhir does no
// I/O and does not log, and it does not depend on the mirror or on HTTP
// serving (net/http is used for status codes only).
func TestNoIOImports(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	forbidden := []string{"os", "net", "log", "log/slog", "io/fs", "net/http/httptest", "github.com/tandemhealth/tandem/mirror"}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := goparser.ParseFile(token.NewFileSet(), f, nil, goparser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			for _, bad := range forbidden {
				if path == bad || strings.HasPrefix(path, bad+"/") && bad != "net" && bad != "log" {
					t.Errorf("%s imports %s", f, path)
				}
			}
		}
	}
}

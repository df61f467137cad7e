package statefile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type state struct {
	Epoch uint64
	Role  string
}

func TestSaveLoad(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hs.json")
	var got state
	if err := Load(p, &got); !errors.Is(err, ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	for _, want := range []state{{1, "primary"}, {2, "backup"}} {
		if err := Save(p, want); err != nil {
			t.Fatal(err)
		}
		if err := Load(p, &got); err != nil || got != want {
			t.Fatalf("load %+v %v, want %+v", got, err, want)
		}
	}
	if _, err := os.Stat(p + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("temporary file left behind")
	}
}

func TestDamageIsDetectedAndNamed(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hs.json")
	Save(p, state{3, "primary"})
	data, _ := os.ReadFile(p)
	for name, damaged := range map[string][]byte{
		"value changed": bytes.Replace(data, []byte(`"Epoch": 3`), []byte(`"Epoch": 4`), 1),
		"truncated":     data[:len(data)/2],
		"empty":         {},
		"unknown field": bytes.Replace(data, []byte(`"Role"`), []byte(`"Rule"`), 1),
	} {
		if bytes.Equal(damaged, data) {
			t.Fatalf("%s: test did not change the file", name)
		}
		os.WriteFile(p, damaged, 0o600)
		var got state
		err := Load(p, &got)
		if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), p) {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

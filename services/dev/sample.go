package dev

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// SampleDirs are where `tandem dev --load-sample` looks for the Synthea
// bundles when --sample-dir is not given, relative to the working
// directory (the repository root under `make dev`).
var SampleDirs = []string{"../shared/testdata/synthea", "testdata/synthea"}

// FindSampleDir returns dir when given, else the first of SampleDirs that
// holds .json bundles.
func FindSampleDir(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	for _, d := range SampleDirs {
		if m, _ := filepath.Glob(filepath.Join(d, "*.json")); len(m) > 0 {
			return d, nil
		}
	}
	return "", fmt.Errorf("dev: no Synthea bundles in %s: pass --sample-dir DIR (a directory of FHIR transaction bundles, *.json)", strings.Join(SampleDirs, " or "))
}

// LoadSample POSTs every *.json transaction bundle of dir to fhirBase (the
// gateway) with token, one after the other, drawing a progress bar on out.
// Each bundle carries an Idempotency-Key derived from its file name, so
// loading the same sample again answers the first results instead of
// writing duplicates.
func LoadSample(ctx context.Context, out io.Writer, client *http.Client, fhirBase, token, dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("dev: no *.json bundles in %s", dir)
	}
	sort.Strings(files)
	var total int64
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			total += fi.Size()
		}
	}
	t0 := time.Now()
	var done int64
	resources, failed := 0, 0
	var errs []error
	bar := func(i int) {
		const width = 30
		frac := float64(done) / float64(max(total, 1))
		n := int(frac * width)
		fmt.Fprintf(out, "\r  [%s%s] %3.0f%%  %d/%d bundles  %d resources  %s ", strings.Repeat("#", n), strings.Repeat(".", width-n),
			frac*100, i, len(files), resources, time.Since(t0).Round(100*time.Millisecond))
	}
	fmt.Fprintf(out, "\nLoading %d Synthea bundles from %s through the gateway…\n", len(files), dir)
	bar(0)
	for i, f := range files {
		if ctx.Err() != nil {
			fmt.Fprintln(out)
			return ctx.Err()
		}
		n, err := postBundle(ctx, client, fhirBase, token, f)
		if err != nil {
			failed++
			errs = append(errs, fmt.Errorf("%s: %w", filepath.Base(f), err))
		}
		resources += n
		if fi, err := os.Stat(f); err == nil {
			done += fi.Size()
		}
		bar(i + 1)
	}
	fmt.Fprintln(out)
	if failed > 0 {
		return fmt.Errorf("dev: %d of %d bundles not loaded: %w", failed, len(files), errors.Join(errs...))
	}
	fmt.Fprintf(out, "Loaded %d bundles (%d resources) in %s.\n", len(files), resources, time.Since(t0).Round(time.Millisecond))
	return nil
}

// postBundle sends one transaction bundle and counts the entries of the
// answer. The error names the HTTP status, never the bundle's content.
func postBundle(ctx context.Context, client *http.Client, fhirBase, token, file string) (int, error) {
	body, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, fhirBase, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Idempotency-Key", "dev-sample-"+filepath.Base(file))
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return 0, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	var res struct {
		Entry []json.RawMessage `json:"entry"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return 0, fmt.Errorf("answer: %w", err)
	}
	return len(res.Entry), nil
}

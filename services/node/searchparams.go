package node

// Which FHIR search parameters are indexed (DESIGN §4): the disabled list
// lives in the mirrored system database; changing it on the primary runs a
// journaled reindex of the affected types, so every member's index keys and
// /metadata follow (fhir/server SetDisabledSearchParams).

import (
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strings"

	"github.com/tandemhealth/tandem/fhir"
	"github.com/tandemhealth/tandem/fhir/search"
)

func (n *Node) searchParamRoutes(mux *http.ServeMux, admin func(http.HandlerFunc) http.HandlerFunc) {
	mux.HandleFunc("GET /admin/search/disabled", admin(func(w http.ResponseWriter, r *http.Request) {
		raw, _, err := n.store.Get(search.DisabledDatabase, search.DisabledKey)
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		list := []string{}
		if len(raw) > 0 {
			list = strings.Split(string(raw), "\n")
		}
		writeJSON(w, http.StatusOK, map[string]any{"disabled": list})
	}))
	mux.HandleFunc("PUT /admin/search/disabled", admin(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Disabled []string `json:"disabled"`
		}
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": `body must be {"disabled": ["Type.code", ...]} (an empty list enables every parameter)`})
			return
		}
		if !n.IsPrimary() {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "not the primary: send it to the member whose /mirror/primary answers 200"})
			return
		}
		srv, err := n.fhir()
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
			return
		}
		reindexed, err := srv.SetDisabledSearchParams(r.Context(), req.Disabled)
		if err != nil {
			code := http.StatusServiceUnavailable
			var fe *fhir.Error
			if errors.As(err, &fe) {
				code = fe.Status
			}
			writeJSON(w, code, map[string]any{"error": err.Error(), "reindexed": reindexed})
			return
		}
		list := append([]string{}, req.Disabled...)
		sort.Strings(list)
		n.log.Warn("search parameters changed", "disabled", len(list), "reindexed_resources", reindexed)
		writeJSON(w, http.StatusOK, map[string]any{"disabled": list, "reindexed": reindexed})
	}))
}

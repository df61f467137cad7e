// Package httpstatus records the status an HTTP handler answered, for
// audit and metrics middleware.
package httpstatus

import (
	"net/http"
	"strconv"
)

// Recorder wraps a ResponseWriter and notes the first status written
// (200 when the handler writes a body without a header). Status is 0 while
// the handler has written nothing.
type Recorder struct {
	http.ResponseWriter
	Status int
}

func (w *Recorder) WriteHeader(code int) {
	if w.Status == 0 {
		w.Status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *Recorder) Write(b []byte) (int, error) {
	if w.Status == 0 {
		w.Status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *Recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Class is "2xx", "4xx", …; 0 (a handler that wrote nothing: net/http
// answers 200) is "2xx".
func Class(code int) string {
	if code == 0 {
		code = http.StatusOK
	}
	return strconv.Itoa(code/100) + "xx"
}

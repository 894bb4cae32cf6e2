package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"

	"github.com/ferry-tunnel/ferry/gateway/adminapi"
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away; nothing to do
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, adminapi.ErrorResponse{Error: msg})
}

// decodeBody reads a JSON object into dst, a pointer to a struct whose
// fields all carry json tags. Its error is meant for the client.
func decodeBody(w http.ResponseWriter, r *http.Request, dst any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return fmt.Errorf("request body is larger than %d KiB", maxBodyBytes>>10)
	case err != nil:
		return fmt.Errorf("cannot read request body: %v", err)
	case len(bytes.TrimSpace(body)) == 0:
		return errors.New("request body is empty: send a JSON object")
	}

	// First as a generic object: syntax, shape, trailing data and unknown
	// keys get precise messages without matching encoding/json's error text.
	var fields map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&fields); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			return fmt.Errorf("request body is not valid JSON (at byte %d): %v", syn.Offset, syn)
		case errors.As(err, &typ):
			return fmt.Errorf("request body must be a JSON object, not %s", typ.Value)
		case errors.Is(err, io.ErrUnexpectedEOF):
			return errors.New("request body is not valid JSON: it ends too early")
		}
		return fmt.Errorf("request body is not valid JSON: %v", err)
	}
	if fields == nil {
		return errors.New("request body must be a JSON object, not null")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("request body has data after the JSON object")
	}
	known := jsonFields(dst)
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		if !slices.Contains(known, k) {
			return fmt.Errorf("unknown field %q in request body (known fields: %s)", k, strings.Join(known, ", "))
		}
	}

	dec = json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var typ *json.UnmarshalTypeError
		if errors.As(err, &typ) {
			return fmt.Errorf("field %q must be %s, not %s", typ.Field, jsonKind(typ.Type), typ.Value)
		}
		return fmt.Errorf("invalid request body: %v", err)
	}
	return nil
}

// jsonFields lists the json names of the fields of *struct dst.
func jsonFields(dst any) []string {
	t := reflect.TypeOf(dst).Elem()
	var names []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name != "" && name != "-" {
			names = append(names, name)
		}
	}
	return names
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint, reflect.Uint64, reflect.Uint32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return "an object"
}

package journal

import (
	"bytes"
	"errors"
	"testing"
)

func TestShippedRecordsCarryTheirCRC(t *testing.T) {
	rec := Record{Type: TypeData, Epoch: 3, LSN: 42, Database: "fhir", Payload: EncodeOps([]Op{{Kind: OpSet, Key: []byte("Patient/1"), Value: []byte("{}")}})}
	b, err := EncodeShipped(rec)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeShipped(b)
	if err != nil || got.LSN != 42 || got.Epoch != 3 || got.Database != "fhir" || !bytes.Equal(got.Payload, rec.Payload) {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for i := range b {
		c := bytes.Clone(b)
		c[i] ^= 0x04
		if _, err := DecodeShipped(c); !errors.Is(err, ErrBadShippedRecord) {
			t.Fatalf("flip at byte %d: %v", i, err)
		}
	}
	if _, err := DecodeShipped(append(bytes.Clone(b), 0)); err == nil {
		t.Fatal("trailing byte accepted")
	}
	if _, err := EncodeShipped(Record{Type: TypeData, LSN: 1, Database: "Bad Name"}); err == nil {
		t.Fatal("bad database accepted")
	}
}

package inspect

import "testing"

var sizes = []struct {
	name string
	n    int
}{{"1KiB", 1 << 10}, {"1MiB", 1 << 20}}

// BenchmarkCheckJSON is the cost of a realistic body within the default
// limits (jsonBody: objects, arrays, strings, numbers, literals).
func BenchmarkCheckJSON(b *testing.B) {
	l := DefaultJSONLimits()
	for _, s := range sizes {
		b.Run(s.name, func(b *testing.B) {
			body := jsonBody(s.n)
			benchCheck(b, body, l.CheckJSON)
		})
	}
}

// BenchmarkCheckJSONWideObjects is the cost an attacker can choose: 1 MiB
// of objects of 1000 short members each, where jsontext's duplicate check
// switches from a linear search to a map with a string per name.
func BenchmarkCheckJSONWideObjects(b *testing.B) {
	var body []byte
	body = append(body, '[')
	for len(body) < 1<<20 {
		if len(body) > 1 {
			body = append(body, ',')
		}
		body = append(body, members(1000)...)
	}
	body = append(body, ']')
	benchCheck(b, body, DefaultJSONLimits().CheckJSON)
}

// BenchmarkCheckXML is the cost of a realistic body within the default
// limits (xmlBody: the same orders as BenchmarkCheckJSON's, as elements,
// attributes, text and CDATA).
func BenchmarkCheckXML(b *testing.B) {
	l := DefaultXMLLimits()
	for _, s := range sizes {
		b.Run(s.name, func(b *testing.B) {
			body := xmlBody(s.n)
			benchCheck(b, body, l.CheckXML)
		})
	}
}

func benchCheck(b *testing.B, body []byte, check func([]byte) *Violation) {
	if v := check(body); v != nil {
		b.Fatal(v)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if v := check(body); v != nil {
			b.Fatal(v)
		}
	}
}

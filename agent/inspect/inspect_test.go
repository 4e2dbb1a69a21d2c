package inspect

import "testing"

func TestClassify(t *testing.T) {
	tests := []struct {
		name        string
		contentType string
		body        string
		want        Kind
	}{
		{"application/json", "application/json", "", JSON},
		{"case does not matter", "Application/JSON", "", JSON},
		{"parameters are ignored", "application/json; charset=utf-8", "", JSON},
		{"parameters without space", "application/json;charset=UTF-8", "", JSON},
		{"spaces around the type", " \tapplication/json\t ", "", JSON},
		{"a +json suffix", "application/problem+json", "", JSON},
		{"a vendor +json type with parameters", "application/vnd.api+json; charset=utf-8", "", JSON},
		{"a +json suffix in capitals", "APPLICATION/MERGE-PATCH+JSON", "", JSON},
		{"a +json suffix under another type", "text/x-thing+json", "", JSON},
		{"garbage after the type a lenient app ignores", "application/json, text/plain", "", JSON},
		{"the body does not matter when the type says JSON", "application/json", "<a/>", JSON},

		{"application/xml", "application/xml", "", XML},
		{"text/xml", "text/xml", "", XML},
		{"text/xml with a charset", "TEXT/XML; charset=iso-8859-1", "", XML},
		{"a +xml suffix", "application/soap+xml", "", XML},
		{"a +xml suffix with parameters", "application/atom+xml;type=feed", "", XML},

		{"no type and an object", "", `{"a":1}`, JSON},
		{"no type and an array after whitespace", "", " \r\n\t[1]", JSON},
		{"a blank type counts as none", "  ", `{}`, JSON},
		{"no type and a string", "", `"a"`, None},
		{"no type and XML is not sniffed", "", `<a/>`, None},
		{"no type and no body", "", "", None},
		{"no type and only whitespace", "", "  \n", None},
		{"no type and a byte order mark", "", "\ufeff{}", None},
		{"no type and a form feed is not JSON whitespace", "", "\f{}", None},

		{"text/plain with an object is not sniffed", "text/plain", `{"a":1}`, None},
		{"application/jsonx", "application/jsonx", `{}`, None},
		{"application/json-seq is not JSON", "application/json-seq", `{}`, None},
		{"text/json is not in the list", "text/json", `{}`, None},
		{"text/xmlx", "text/xmlx", "<a/>", None},
		{"image/xml is not in the list", "image/xml", "<a/>", None},
		{"a suffix must end the subtype", "application/foo+json2", `{}`, None},
		{"no subtype", "application/", `{}`, None},
		{"no slash", "json", `{}`, None},
		{"a parameter only", ";charset=utf-8", `{}`, None},
		{"a form", "application/x-www-form-urlencoded", `{}`, None},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ct []byte
			if tt.contentType != "" {
				ct = []byte(tt.contentType)
			}
			if got := Classify(ct, []byte(tt.body)); got != tt.want {
				t.Errorf("Classify(%q, %q) = %v, want %v", tt.contentType, tt.body, got, tt.want)
			}
		})
	}
}

func TestClassifyWithoutAllocating(t *testing.T) {
	ct, body := []byte("Application/Vnd.Api+JSON; charset=utf-8"), []byte(`{}`)
	if n := testing.AllocsPerRun(100, func() { _ = Classify(ct, body) }); n != 0 {
		t.Errorf("%v allocations per call, want 0", n)
	}
}

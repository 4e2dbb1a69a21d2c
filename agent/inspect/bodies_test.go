package inspect

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// Realistic bodies for benchmarks and allocation tests: an order list as a
// shop's API would take it, with nested objects, arrays of objects, short
// and long strings (some with escapes or non-ASCII), integers, decimals,
// booleans and nulls. The same size always gives the same bytes.

var words = strings.Fields(`lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod
	tempor incididunt ut labore et dolore magna aliqua café naïve "quoted" tab	line`)

func sentence(r *rand.Rand, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(words[r.IntN(len(words))])
	}
	return b.String()
}

// jsonBody returns an object {"orders":[...]} of at least size bytes.
func jsonBody(size int) []byte {
	r := rand.New(rand.NewPCG(15, uint64(size)))
	var b strings.Builder
	b.WriteString(`{"orders":[`)
	for i := 0; b.Len() < size; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"created":"2026-05-%02dT%02d:%02d:00Z","status":%q,"paid":%t,"coupon":null,`,
			100000+i, 1+r.IntN(28), r.IntN(24), r.IntN(60), []string{"new", "paid", "shipped"}[r.IntN(3)], r.IntN(2) == 0)
		fmt.Fprintf(&b, `"customer":{"id":"c-%05d","name":%q,"email":"user%d@example.test","vip":%t,"tags":["retail","eu",%q]},"items":[`,
			r.IntN(100000), sentence(r, 2), r.IntN(1000), r.IntN(10) == 0, words[r.IntN(len(words))])
		for j := range 1 + r.IntN(5) {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"sku":"SKU-%06d","qty":%d,"price":%d.%02d,"weight":%.3e,"description":%q}`,
				r.IntN(1000000), 1+r.IntN(9), r.IntN(500), r.IntN(100), r.Float64()*1000, sentence(r, 3+r.IntN(20)))
		}
		fmt.Fprintf(&b, `],"total":%d.%02d,"note":%q}`, r.IntN(5000), r.IntN(100), sentence(r, r.IntN(8)))
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// xmlBody returns the same kind of document as jsonBody, as XML of at least
// size bytes.
func xmlBody(size int) []byte {
	r := rand.New(rand.NewPCG(15, uint64(size)))
	esc := func(s string) string {
		return strings.NewReplacer("&", "&amp;", "<", "&lt;", `"`, "&quot;").Replace(s)
	}
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n" + `<orders xmlns="urn:example:shop">`)
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "\n"+`<order id="%d" status="%s" paid="%t"><created>2026-05-%02dT%02d:%02d:00Z</created>`,
			100000+i, []string{"new", "paid", "shipped"}[r.IntN(3)], r.IntN(2) == 0, 1+r.IntN(28), r.IntN(24), r.IntN(60))
		fmt.Fprintf(&b, `<customer id="c-%05d" vip="%t"><name>%s</name><email>user%d@example.test</email><tags><tag>retail</tag><tag>eu</tag></tags></customer><items>`,
			r.IntN(100000), r.IntN(10) == 0, esc(sentence(r, 2)), r.IntN(1000))
		for range 1 + r.IntN(5) {
			fmt.Fprintf(&b, `<item sku="SKU-%06d" qty="%d"><price>%d.%02d</price><weight>%.3e</weight><description>%s</description></item>`,
				r.IntN(1000000), 1+r.IntN(9), r.IntN(500), r.IntN(100), r.Float64()*1000, esc(sentence(r, 3+r.IntN(20))))
		}
		fmt.Fprintf(&b, `</items><total>%d.%02d</total><note><![CDATA[%s]]></note></order>`, r.IntN(5000), r.IntN(100), sentence(r, r.IntN(8)))
	}
	b.WriteString("\n</orders>\n")
	return []byte(b.String())
}

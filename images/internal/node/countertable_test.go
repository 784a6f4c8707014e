package node

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/shim"
	"github.com/ouronet/ouro/layer/shim/carrier"
	"github.com/ouronet/ouro/layer/shim/diode"
	"reflect"
	"sort"
	"testing"
)

// jsonCounterTable is what counterTable replaced: the counters' JSON form
// decoded into maps and flattened, keys sorted at each level.
func jsonCounterTable(v any) ipcp.Table {
	t := ipcp.Table{Columns: []string{"counter", "value"}}
	b, err := json.Marshal(v)
	if err != nil {
		return t
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if dec.Decode(&m) != nil {
		return t
	}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			switch x := m[k].(type) {
			case map[string]any:
				walk(prefix+k+".", x)
			default:
				t.Rows = append(t.Rows, []string{prefix + k, fmt.Sprint(x)})
			}
		}
	}
	walk("", m)
	return t
}

// fill sets every integer counter reachable in v to a different value.
func fill(v reflect.Value, n *uint64) {
	switch v.Kind() {
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), n)
			}
		}
	case reflect.Uint64, reflect.Uint, reflect.Uint32:
		*n = *n*31 + 7
		v.SetUint(*n)
	case reflect.Int64, reflect.Int:
		*n = *n*31 + 7
		v.SetInt(-int64(*n % 1000))
	}
}

// TestCounterTable: counterTable gives the table the JSON round trip gave
// for every counter struct a shim's "stats" flattens: names, nesting,
// embedded structs, order and values.
func TestCounterTable(t *testing.T) {
	type inner struct {
		B uint64 `json:"b"`
		A int    `json:"a,omitempty"`
	}
	type odd struct {
		inner
		Z      uint64 `json:"z"`
		Hidden uint64 `json:"-"`
		NoTag  uint64
		Nested inner `json:"nested"`
		lower  uint64
	}
	for _, tc := range []struct {
		name string
		v    any
	}{
		{"shim", &shim.Stats{}},
		{"diode", &struct {
			shim.Stats
			FEC diode.FECStats `json:"fec"`
		}{}},
		{"carrier", &struct {
			shim.Stats
			Bundles carrier.BundleStats `json:"bundles"`
		}{}},
		{"tags", &odd{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, filled := range []bool{false, true} {
				if filled {
					n := uint64(1)
					fill(reflect.ValueOf(tc.v).Elem(), &n)
				}
				v := reflect.ValueOf(tc.v).Elem().Interface() // by value, as Mgmt passes it
				got, want := counterTable(v), jsonCounterTable(v)
				if len(want.Rows) < 3 {
					t.Fatalf("the JSON table has %d rows", len(want.Rows))
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("counterTable:\n%v\nwant (JSON):\n%v", got.Rows, want.Rows)
				}
			}
		})
	}
}

// Package kerneltest boots kernels for tests of code that runs as a
// component: its buffers, rings and endpoints.
package kerneltest

import (
	"testing"

	"github.com/ouronet/ouro/kernel"
)

// PD boots a kernel with one component, name, of budget b, whose program
// waits until the kernel stops, and returns the component's PD. The
// kernel stops when the test ends.
func PD(t testing.TB, name string, b kernel.Budget) *kernel.PD {
	t.Helper()
	k := kernel.New(kernel.Config{})
	ch := make(chan *kernel.PD, 1)
	err := k.Boot(&kernel.System{Components: []kernel.ComponentSpec{{Name: name, Budget: b}}},
		map[string]kernel.Program{name: func(pd *kernel.PD) error {
			ch <- pd
			<-pd.Context().Done()
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Stop)
	return <-ch
}

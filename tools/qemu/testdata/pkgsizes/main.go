// Command pkgsizes is what TestPkgSizes runs tools/qemu/pkgsizes.sh on: a
// Go program with its symbols, one of them a generic function
// instantiated with another package's type.
package main

import (
	"fmt"
	"os/exec"
)

//go:noinline
func keep[T any](x T) T { return x }

func main() { fmt.Println(keep(exec.Cmd{Path: "x"}).Path) }

//go:build !linux

package main

import (
	"errors"
	"os"
)

type tunDev struct{ *os.File }

func (t tunDev) name() string { return "" }

func openTUN(string, int) (tunDev, error) {
	return tunDev{}, errors.New("ipnet: TUN interfaces are supported on Linux only")
}

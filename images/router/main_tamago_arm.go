//go:build tamago && arm && !pi2 && !pizero && !pi1

package main

import "github.com/ouronet/ouro/board/usbarmory"

// The USB armory Mk II and QEMU's mcimx6ul-evk (board/usbarmory).
type board = usbarmory.Board

const boardPrefix = "usbarmory"

func boardExit(code int) { usbarmory.Exit(code) }

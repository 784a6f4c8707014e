//go:build tamago && arm

package main

import "github.com/ouronet/ouro/board/usbarmory"

// The USB armory Mk II and QEMU's mcimx6ul-evk (board/usbarmory).
type board = usbarmory.Board

const (
	maxFrameLen = usbarmory.MaxFrameLen
	sleepInsn   = "WFI"
)

var errFrameTooLong = usbarmory.ErrFrameTooLong

func exit(code int) { usbarmory.Exit(code) }

// boardReady lights the blue LED (a no-op under QEMU).
func boardReady(b *board) { b.LED(usbarmory.LEDBlue, true) }

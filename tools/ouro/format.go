package main

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// siUnit formats v with an SI prefix: 1234567 "bit/s" → "1.23 Mbit/s".
func siUnit(v float64, unit string) string {
	prefixes := []string{"", "k", "M", "G", "T"}
	i := 0
	for math.Abs(v) >= 1000 && i < len(prefixes)-1 {
		v /= 1000
		i++
	}
	prec := 2
	if i == 0 && v == math.Trunc(v) {
		prec = 0
	}
	return strconv.FormatFloat(v, 'f', prec, 64) + " " + prefixes[i] + unit
}

// ms formats milliseconds with three decimals, as ping(8) does.
func ms(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }

// percent formats a percentage compactly: 0, 50, 2.8, 0.0123.
func percent(v float64) string {
	return strconv.FormatFloat(v, 'g', 4, 64) + "%"
}

// secs formats a duration in seconds with two decimals.
func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

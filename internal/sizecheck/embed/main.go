// Command embed is internal/sizecheck's hello-world that embeds update as
// a program that installs its own releases does (see update's Example):
// its growth over internal/sizecheck/hello is what update costs.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/update"
)

var version string

func main() {
	if update.IsHealthCheck(os.Args[1:]) {
		fmt.Println(version)
		return
	}
	fmt.Println("hello, world")
	v, err := update.BuildVersion(version)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	key, err := signer.ParsePublicKey(os.Getenv("HELLO_KEY"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	u, err := update.New(update.Config{Key: key, Version: v, HealthCheck: &update.HealthCheck{}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if _, err := u.Run(context.Background(), update.Install); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := u.Restart(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

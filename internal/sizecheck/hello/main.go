// Command hello is the hello-world that internal/sizecheck measures
// embedding update against.
package main

import "fmt"

func main() { fmt.Println("hello, world") }

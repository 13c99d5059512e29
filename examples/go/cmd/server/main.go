// Command server is a tiny HTTP server to show `kiln watch run`: every request is answered with
// the greeting of the greet package, so editing greet/greeting.txt (or greet.go) rebuilds and
// restarts it. It speaks just enough HTTP/1.0 with the net package to stay small.
//
//	kiln watch run //go/cmd/server -- 8080
//	curl http://127.0.0.1:8080/
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"

	"example.com/kilnexample/greet"
)

func main() {
	port := "8080"
	if len(os.Args) > 1 {
		port = os.Args[1]
	}
	listener, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "server: listening on", listener.Addr())
	for {
		conn, err := listener.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "server:", err)
			continue
		}
		go serve(conn)
	}
}

// serve reads one request's head and answers it.
func serve(conn net.Conn) {
	defer conn.Close()
	reader := bufio.NewReader(conn)
	for {
		line, err := reader.ReadString('\n')
		if err != nil || strings.TrimSpace(line) == "" {
			break
		}
	}
	body := greet.Hello("watcher") + "\n"
	fmt.Fprintf(conn, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

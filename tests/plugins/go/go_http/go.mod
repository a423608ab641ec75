module pwvm.test/go_http

go 1.27

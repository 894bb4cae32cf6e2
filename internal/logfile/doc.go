// Package logfile is a log file that rotates itself by size, for the
// programs' [log] file setting. The full file becomes FILE.1, FILE.1 becomes
// FILE.2 and so on; at most MaxFiles files are kept, FILE included. A file
// moved or deleted by someone else (logrotate, an operator) is noticed
// within a second and FILE is opened again, so no log goes to a file
// nobody can see.
package logfile

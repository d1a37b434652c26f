# frozen_string_literal: true

require "open3"
require "tmpdir"
require "fileutils"

# A throwaway PKI made with `openssl`: a CA, a server certificate for 127.0.0.1 and
# localhost, one for another name only, a client certificate, and an unrelated CA.
class Certificates
  attr_reader :dir

  EXTENSIONS = <<~CNF
    [server]
    subjectAltName=IP:127.0.0.1,DNS:localhost
    extendedKeyUsage=serverAuth
    [other]
    subjectAltName=DNS:other.example
    extendedKeyUsage=serverAuth
    [client]
    extendedKeyUsage=clientAuth
  CNF

  def initialize
    @dir = Dir.mktmpdir("fiber_job-pki")
    File.write(path("ext.cnf"), EXTENSIONS)
    ca("ca", "FiberJob Test CA")
    ca("other_ca", "Someone Else's CA")
    signed("server", "localhost", "server")
    signed("other", "other.example", "other")
    signed("client", "fiber_job client", "client")
  end

  def path(name) = File.join(@dir, name)
  def ca_file = path("ca.pem")
  def other_ca_file = path("other_ca.pem")

  # [cert, key] of a named certificate.
  def pair(name) = [path("#{name}.pem"), path("#{name}.key")]

  def cleanup
    FileUtils.rm_rf(@dir)
  end

  private

  def openssl(*args)
    out, status = Open3.capture2e("openssl", *args, chdir: @dir)
    raise "openssl #{args.first} failed: #{out}" unless status.success?
  end

  def ca(name, subject)
    openssl("genrsa", "-out", "#{name}.key", "2048")
    openssl("req", "-x509", "-new", "-nodes", "-key", "#{name}.key", "-sha256", "-days", "2",
            "-subj", "/CN=#{subject}", "-out", "#{name}.pem")
  end

  def signed(name, subject, extensions)
    openssl("genrsa", "-out", "#{name}.key", "2048")
    openssl("req", "-new", "-key", "#{name}.key", "-subj", "/CN=#{subject}", "-out", "#{name}.csr")
    openssl("x509", "-req", "-in", "#{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "#{name}.pem", "-days", "2", "-sha256", "-extfile", "ext.cnf", "-extensions", extensions)
  end
end

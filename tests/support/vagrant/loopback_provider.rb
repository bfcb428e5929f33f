# A Vagrant provider for the test suite whose "VMs" are sshd daemons the tests started
# on loopback addresses: `vagrant up` does nothing, `vagrant status` says running once
# a machine is listed, and `vagrant ssh-config` gives the address from CMQ_TEST_VMS
# (JSON: {"vm1": {"host": "127.0.0.171", "port": 22, "user": "root", "key": "/path"}}).
# Everything else of vagrant is its own: the Vagrantfile, the ssh-config output, errors.
require "json"

module CmqLoopback
  def self.vms
    JSON.parse(ENV.fetch("CMQ_TEST_VMS", "{}"))
  end

  # `up` marks the machine created (vagrant then remembers its provider), `destroy`
  # forgets it, and every other action does nothing.
  class Act
    def initialize(app, _env, name)
      @app = app
      @name = name
    end

    def call(env)
      env[:machine].id = env[:machine].name.to_s if @name == :up
      env[:machine].id = nil if @name == :destroy
      @app.call(env)
    end
  end

  class Provider < Vagrant.plugin("2", :provider)
    def initialize(machine)
      @machine = machine
    end

    def action(name)
      Vagrant::Action::Builder.new.tap do |b|
        b.use Vagrant::Action::Builtin::HandleBox if name == :up   # vagrant's own box lookup
        b.use Act, name
      end
    end

    def state
      id = if @machine.id.nil? then :not_created
           elsif CmqLoopback.vms.key?(@machine.name.to_s) then :running
           else :shutoff
           end
      Vagrant::MachineState.new(id, id.to_s.tr("_", " "), "a loopback sshd of the test suite")
    end

    def ssh_info
      vm = CmqLoopback.vms[@machine.name.to_s]
      return nil unless vm
      { host: vm["host"], port: vm["port"], username: vm["user"], private_key_path: [vm["key"]] }
    end
  end

  class Plugin < Vagrant.plugin("2")
    name "cmq-loopback"
    provider(:loopback, parallel: true) { Provider }
  end
end
